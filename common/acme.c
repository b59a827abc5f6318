/* SPDX-License-Identifier: MIT */
/*
 * ACME client (RFC 8555): directory, nonces, account (ES256, JWS with jwk
 * for newAccount and kid afterwards), order, HTTP-01 authorization,
 * finalize with a CSR for a separate certificate key, download, renewal.
 */
#include "common/acme.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/curlx.h"
#include "common/log.h"
#include "common/util.h"

struct acme {
	struct acme_config cfg;
	char *hostname, *email, *directory, *state_dir, *http_listen, *ca_file;
	char account_key_path[600], cert_key_path[600], cert_path[600];
	struct MHD_Daemon *mhd;
	pthread_mutex_t lock;		/* token, keyauth */
	char token[256];
	char keyauth[512];
	pthread_t thread;
	bool running;
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	bool stop;
	/* per issuance */
	EVP_PKEY *account;
	char jwk[256];			/* {"crv":..,"kty":..,"x":..,"y":..} */
	char thumb[64];
	char *kid;
	char *nonce;
	json_t *dir;
	char why[512];
};

static void __attribute__((format(printf, 2, 3)))
fail(struct acme *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->why, sizeof(a->why), fmt, ap);
	va_end(ap);
}

/* ---- base64url ---- */

static char *
b64url(const unsigned char *p, size_t n)
{
	static const char t[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *o = malloc(n * 4 / 3 + 4), *q = o;

	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*q++ = t[(v >> 18) & 63];
		*q++ = t[(v >> 12) & 63];
		if (i + 1 < n)
			*q++ = t[(v >> 6) & 63];
		if (i + 2 < n)
			*q++ = t[v & 63];
	}
	*q = 0;
	return o;
}

static char *
b64url_str(const char *s)
{
	return b64url((const unsigned char *)s, strlen(s));
}

/* ---- files ---- */

static int
write_private(const char *path, const void *data, size_t n)
{
	char tmp[700];
	int fd;
	ssize_t w;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
		return -1;
	w = write(fd, data, n);
	if (w != (ssize_t)n || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static EVP_PKEY *
key_load(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (f == NULL)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

static int
key_save(const char *path, EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;
	int r = -1;

	if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1 &&
	    (n = BIO_get_mem_data(b, &p)) > 0)
		r = write_private(path, p, (size_t)n);
	BIO_free_all(b);	/* BIO_s_mem clears its buffer when freed */
	return r;
}

static EVP_PKEY *
key_new(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* ---- HTTP ---- */

struct resp {
	long status;
	char *body;
	size_t len;
	char location[1024];
	char nonce[256];
};

static size_t
on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct resp *r = arg;
	size_t add = sz * n;
	char *nb;

	if (r->len + add > 1 << 20)
		return 0;
	if ((nb = realloc(r->body, r->len + add + 1)) == NULL)
		return 0;
	r->body = nb;
	memcpy(r->body + r->len, p, add);
	r->len += add;
	r->body[r->len] = 0;
	return add;
}

static void
header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);

	if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	line += nl + 1;
	n -= nl + 1;
	while (n && (*line == ' ' || *line == '\t'))
		line++, n--;
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n' || line[n - 1] == ' '))
		n--;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, line, n);
	out[n] = 0;
}

static size_t
on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct resp *r = arg;

	header_value(p, sz * n, "location", r->location, sizeof(r->location));
	header_value(p, sz * n, "replay-nonce", r->nonce, sizeof(r->nonce));
	return sz * n;
}

/* method: "GET", "HEAD" or "POST" (body: a JWS). */
static int
http(struct acme *a, const char *method, const char *url, const char *body, struct resp *r)
{
	char err[CURL_ERROR_SIZE];
	CURL *c;
	struct curl_slist *h = NULL;
	CURLcode cc;

	memset(r, 0, sizeof(*r));
	if ((c = curlx_new(url, on_body, r, err, a->ca_file)) == NULL) {
		fail(a, "out of memory");
		return -1;
	}
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "wiremesh-acme/1");
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/jose+json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	cc = curl_easy_perform(c);
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (cc != CURLE_OK) {
		fail(a, "ACME server %s unreachable: %s", url, err[0] ? err : curl_easy_strerror(cc));
		free(r->body);
		r->body = NULL;
		return -1;
	}
	if (r->nonce[0]) {
		free(a->nonce);
		a->nonce = strdup(r->nonce);
	}
	return 0;
}

/* The problem document of an error reply, as "type: detail". */
static void
problem(const struct resp *r, char *out, size_t n)
{
	json_t *j = r->body ? json_loads(r->body, 0, NULL) : NULL;
	const char *type = j ? json_string_value(json_object_get(j, "type")) : NULL;
	const char *detail = j ? json_string_value(json_object_get(j, "detail")) : NULL;

	snprintf(out, n, "HTTP %ld %s%s%s", r->status, type ? type : "",
	    type && detail ? ": " : "", detail ? detail : "");
	json_decref(j);
}

/* ---- JWS ---- */

static int
jwk_of(struct acme *a)
{
	BIGNUM *x = NULL, *y = NULL;
	unsigned char xb[32], yb[32], dg[32];
	char *xs = NULL, *ys = NULL, *th = NULL;
	unsigned dl = 0;
	int r = -1;

	if (EVP_PKEY_get_bn_param(a->account, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
	    EVP_PKEY_get_bn_param(a->account, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1 &&
	    BN_bn2binpad(x, xb, 32) == 32 && BN_bn2binpad(y, yb, 32) == 32 &&
	    (xs = b64url(xb, 32)) && (ys = b64url(yb, 32))) {
		/* RFC 7638: the required members in lexicographic order, no blanks. */
		snprintf(a->jwk, sizeof(a->jwk),
		    "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", xs, ys);
		if (EVP_Digest(a->jwk, strlen(a->jwk), dg, &dl, EVP_sha256(), NULL) == 1 &&
		    (th = b64url(dg, dl))) {
			str_copy(a->thumb, th, sizeof(a->thumb));
			r = 0;
		}
	}
	BN_free(x);
	BN_free(y);
	free(xs);
	free(ys);
	free(th);
	return r;
}

static char *
sign_es256(struct acme *a, const char *input)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned char der[128], raw[64];
	const unsigned char *dp = der;
	size_t dl = sizeof(der);
	ECDSA_SIG *sig = NULL;
	const BIGNUM *r, *s;
	char *out = NULL;

	if (m && EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, a->account) == 1 &&
	    EVP_DigestSign(m, der, &dl, (const unsigned char *)input, strlen(input)) == 1 &&
	    (sig = d2i_ECDSA_SIG(NULL, &dp, (long)dl)) != NULL) {
		ECDSA_SIG_get0(sig, &r, &s);
		if (BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32)
			out = b64url(raw, 64);
	}
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(m);
	return out;
}

/* A flattened JWS; payload NULL: POST-as-GET (empty payload). */
static char *
jws(struct acme *a, const char *url, const char *payload, bool use_jwk)
{
	json_t *prot = json_object();
	char *ps = NULL, *p64 = NULL, *pl64 = NULL, *input = NULL, *sig = NULL, *out = NULL;
	json_t *o;

	json_object_set_new(prot, "alg", json_string("ES256"));
	json_object_set_new(prot, "nonce", json_string(a->nonce ? a->nonce : ""));
	json_object_set_new(prot, "url", json_string(url));
	if (use_jwk)
		json_object_set_new(prot, "jwk", json_loads(a->jwk, 0, NULL));
	else
		json_object_set_new(prot, "kid", json_string(a->kid ? a->kid : ""));
	if ((ps = json_dumps(prot, JSON_COMPACT)) == NULL || (p64 = b64url_str(ps)) == NULL ||
	    (pl64 = b64url_str(payload ? payload : "")) == NULL ||
	    (input = malloc(strlen(p64) + strlen(pl64) + 2)) == NULL)
		goto out;
	sprintf(input, "%s.%s", p64, pl64);
	if ((sig = sign_es256(a, input)) == NULL)
		goto out;
	o = json_pack("{s:s, s:s, s:s}", "protected", p64, "payload", pl64, "signature", sig);
	out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
out:
	json_decref(prot);
	free(ps);
	free(p64);
	free(pl64);
	free(input);
	free(sig);
	return out;
}

static int
get_nonce(struct acme *a)
{
	struct resp r;
	const char *u = json_string_value(json_object_get(a->dir, "newNonce"));

	if (u == NULL) {
		fail(a, "ACME directory has no newNonce");
		return -1;
	}
	if (http(a, "HEAD", u, NULL, &r) != 0)
		return -1;
	free(r.body);
	if (a->nonce == NULL) {
		fail(a, "ACME server gave no Replay-Nonce (HTTP %ld)", r.status);
		return -1;
	}
	return 0;
}

/* POST a JWS to url; retries once on badNonce. The reply's JSON (if any)
 * in *out. Fails (with the problem detail) on a status >= 400. */
static int
post(struct acme *a, const char *url, const char *payload, bool use_jwk, struct resp *r,
     const char *what)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		char *body;
		int rc;

		if (a->nonce == NULL && get_nonce(a) != 0)
			return -1;
		if ((body = jws(a, url, payload, use_jwk)) == NULL) {
			fail(a, "cannot sign the ACME request");
			return -1;
		}
		free(a->nonce);
		a->nonce = NULL;
		rc = http(a, "POST", url, body, r);
		free(body);
		if (rc != 0)
			return -1;
		if (r->status >= 400) {
			char p[400];

			problem(r, p, sizeof(p));
			if (strstr(p, "badNonce") && attempt < 2) {
				free(r->body);
				continue;
			}
			fail(a, "%s refused: %s", what, p);
			free(r->body);
			r->body = NULL;
			return -1;
		}
		return 0;
	}
	return -1;
}

static json_t *
post_json(struct acme *a, const char *url, const char *payload, bool use_jwk,
	  char *location, size_t loclen, const char *what)
{
	struct resp r;
	json_t *j;

	if (post(a, url, payload, use_jwk, &r, what) != 0)
		return NULL;
	if (location)
		str_copy(location, r.location, loclen);
	j = r.body ? json_loads(r.body, 0, NULL) : NULL;
	free(r.body);
	if (j == NULL)
		fail(a, "%s: the ACME server answered no JSON", what);
	return j;
}

/* ---- TLS-ALPN-01 (RFC 8737) ---- */

int
acme_challenge_parse(const char *s, enum acme_challenge *out)
{
	if (s && strcmp(s, "http-01") == 0)
		*out = ACME_HTTP_01;
	else if (s && strcmp(s, "tls-alpn-01") == 0)
		*out = ACME_TLS_ALPN_01;
	else
		return -1;
	return 0;
}

int
acme_alpn_list_offered(const unsigned char *p, size_t n)
{
	static const char proto[] = "acme-tls/1";

	while (n > 0) {
		size_t l = p[0];

		if (l + 1 > n)
			return 0;
		if (l == sizeof(proto) - 1 && memcmp(p + 1, proto, l) == 0)
			return 1;
		p += l + 1;
		n -= l + 1;
	}
	return 0;
}

int
acme_alpn_ext_offered(const unsigned char *p, size_t n)
{
	return n >= 2 && (size_t)((p[0] << 8) | p[1]) == n - 2 &&
	    acme_alpn_list_offered(p + 2, n - 2);
}

int
acme_alpn_cert_make(const char *hostname, const char *keyauth, X509 **cert, EVP_PKEY **key)
{
	unsigned char der[2 + 32];	/* OCTET STRING (32 bytes) */
	unsigned int dlen = 0;
	EVP_PKEY *k = key_new();
	X509 *x = X509_new();
	X509_NAME *n;
	GENERAL_NAMES *gns = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
	ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	X509_EXTENSION *ext = NULL;
	unsigned char serial[16];
	BIGNUM *bn = NULL;
	int ok = 0;

	der[0] = 0x04;
	der[1] = 32;
	if (k == NULL || x == NULL || gns == NULL || gn == NULL || ia5 == NULL || oid == NULL ||
	    os == NULL ||
	    EVP_Digest(keyauth, strlen(keyauth), der + 2, &dlen, EVP_sha256(), NULL) != 1 ||
	    dlen != 32 || RAND_bytes(serial, sizeof(serial)) != 1)
		goto out;
	serial[0] &= 0x7f;
	if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_set_version(x, 2) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400) == NULL)
		goto out;
	n = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)hostname,
	    -1, -1, 0) != 1 || X509_set_issuer_name(x, n) != 1 || X509_set_pubkey(x, k) != 1 ||
	    ASN1_STRING_set(ia5, hostname, -1) != 1)
		goto out;
	GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
	ia5 = NULL;
	if (sk_GENERAL_NAME_push(gns, gn) <= 0)
		goto out;
	gn = NULL;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gns, 0, X509V3_ADD_DEFAULT) != 1 ||
	    ASN1_OCTET_STRING_set(os, der, sizeof(der)) != 1 ||
	    (ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, os)) == NULL ||
	    X509_add_ext(x, ext, -1) != 1 || X509_sign(x, k, EVP_sha256()) <= 0)
		goto out;
	*cert = x;
	*key = k;
	x = NULL;
	k = NULL;
	ok = 1;
out:
	BN_free(bn);
	X509_EXTENSION_free(ext);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(oid);
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(gns);
	X509_free(x);
	EVP_PKEY_free(k);
	return ok ? 0 : -1;
}

/* ---- challenge listener ---- */

static enum MHD_Result
on_challenge(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
	     const char *version, const char *upload, size_t *upload_len, void **con_cls)
{
	struct acme *a = cls;
	static const char prefix[] = "/.well-known/acme-challenge/";
	struct MHD_Response *resp;
	char body[600];
	unsigned status = 404;
	enum MHD_Result ret;

	(void)version;
	(void)upload;
	(void)con_cls;
	if (*upload_len) {
		*upload_len = 0;
		return MHD_YES;
	}
	snprintf(body, sizeof(body), "not found\n");
	if (strcmp(method, "GET") == 0 && strncmp(url, prefix, sizeof(prefix) - 1) == 0) {
		pthread_mutex_lock(&a->lock);
		if (a->token[0] && strcmp(url + sizeof(prefix) - 1, a->token) == 0) {
			str_copy(body, a->keyauth, sizeof(body));
			status = 200;
		}
		pthread_mutex_unlock(&a->lock);
		log_debug("msg=\"acme: challenge request\" status=%u", status);
	} else if (strcmp(url, "/generate_204") == 0) {
		resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
		if (resp == NULL)
			return MHD_NO;
		ret = MHD_queue_response(conn, 204, resp);
		MHD_destroy_response(resp);
		return ret;
	} else if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
		char loc[1200];

		snprintf(loc, sizeof(loc), "https://%s%s", a->hostname, url);
		snprintf(body, sizeof(body), "use HTTPS\n");
		resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
		if (resp == NULL)
			return MHD_NO;
		MHD_add_response_header(resp, "Location", loc);
		ret = MHD_queue_response(conn, 301, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "text/plain");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void __attribute__((format(printf, 2, 0)))
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[256];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = 0;
	log_debug("msg=\"acme: challenge listener\" detail=\"%s\"", line);
}

static int
listener_start(struct acme *a)
{
	const char *l = a->http_listen ? a->http_listen : ":80";
	const char *colon = strrchr(l, ':');
	char host[128] = "";
	long port;
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	memset(&ss, 0, sizeof(ss));
	if (colon == NULL || (port = strtol(colon + 1, NULL, 10)) < 0 || port > 65535) {
		fail(a, "bad acme_http_listen \"%s\" (HOST:PORT or :PORT)", l);
		return -1;
	}
	if ((size_t)(colon - l) < sizeof(host)) {
		memcpy(host, l, (size_t)(colon - l));
		host[colon - l] = 0;
	}
	if (host[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		size_t hl = strlen(host);

		if (hl < 2 || host[hl - 1] != ']') {
			fail(a, "bad acme_http_listen \"%s\"", l);
			return -1;
		}
		host[hl - 1] = 0;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1) {
			fail(a, "bad acme_http_listen address \"%s\"", l);
			return -1;
		}
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (host[0] && inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
			fail(a, "bad acme_http_listen address \"%s\" (an IP address)", l);
			return -1;
		}
	}
	a->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_challenge, a,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_CONNECTION_LIMIT, 64u,
	    MHD_OPTION_CONNECTION_TIMEOUT, 10u,
	    MHD_OPTION_END);
	if (a->mhd == NULL) {
		fail(a, "cannot listen on acme_http_listen %s for HTTP-01 challenges: %s", l,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- certificate checks ---- */

static time_t
asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

/* 0 and the validity of the certificate on disk if it is for the hostname,
 * matches the key and is not expired; -1 otherwise. */
static int
cert_check(struct acme *a, time_t *not_before, time_t *not_after, char *serial, size_t sl)
{
	FILE *f = fopen(a->cert_path, "r");
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	int r = -1;

	if (f == NULL)
		return -1;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (x == NULL)
		return -1;
	if ((k = key_load(a->cert_key_path)) != NULL && X509_check_private_key(x, k) == 1 &&
	    X509_check_host(x, a->hostname, 0, 0, NULL) == 1) {
		*not_before = asn1_time(X509_get0_notBefore(x));
		*not_after = asn1_time(X509_get0_notAfter(x));
		if (*not_after > time(NULL))
			r = 0;
		if (serial) {
			BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
			char *hex = bn ? BN_bn2hex(bn) : NULL;

			str_copy(serial, hex ? hex : "?", sl);
			OPENSSL_free(hex);
			BN_free(bn);
		}
	}
	EVP_PKEY_free(k);
	X509_free(x);
	return r;
}

static time_t
renew_at(const struct acme *a, time_t nb, time_t na)
{
	int64_t before = a->cfg.renew_before_s ? a->cfg.renew_before_s : (na - nb) / 3;

	return na - (time_t)before;
}

/* ---- issuance ---- */

static char *
make_csr(struct acme *a, EVP_PKEY *key)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *san;
	char sanv[300];
	unsigned char *der = NULL;
	int dl;
	char *out = NULL;

	snprintf(sanv, sizeof(sanv), "DNS:%s", a->hostname);
	san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, sanv);
	if (req && name && exts && san &&
	    X509_REQ_set_version(req, 0) == 1 &&
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
		(const unsigned char *)a->hostname, -1, -1, 0) == 1 &&
	    X509_REQ_set_subject_name(req, name) == 1 &&
	    sk_X509_EXTENSION_push(exts, san) > 0 &&
	    X509_REQ_add_extensions(req, exts) == 1 &&
	    X509_REQ_set_pubkey(req, key) == 1 &&
	    X509_REQ_sign(req, key, EVP_sha256()) > 0 &&
	    (dl = i2d_X509_REQ(req, &der)) > 0)
		out = b64url(der, (size_t)dl);
	OPENSSL_free(der);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return out;
}

static bool
wait_stop(struct acme *a, int64_t ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&a->stop_lock);
	while (!a->stop && pthread_cond_timedwait(&a->stop_cond, &a->stop_lock, &ts) == 0)
		;
	stop = a->stop;
	pthread_mutex_unlock(&a->stop_lock);
	return stop;
}

/* Polls url (POST-as-GET) until its status is not pending/processing/ready
 * (ready counts as done for want="ready"). */
static json_t *
poll_status(struct acme *a, const char *url, const char *want, const char *what)
{
	for (int i = 0; i < 120; i++) {
		json_t *j = post_json(a, url, NULL, false, NULL, 0, what);
		const char *st;

		if (j == NULL)
			return NULL;
		st = json_string_value(json_object_get(j, "status"));
		if (st && (strcmp(st, want) == 0 || strcmp(st, "invalid") == 0 ||
		    strcmp(st, "valid") == 0 || strcmp(st, "revoked") == 0 ||
		    strcmp(st, "deactivated") == 0 || strcmp(st, "expired") == 0))
			return j;
		json_decref(j);
		if (wait_stop(a, i < 10 ? 500 : 2000)) {
			fail(a, "stopped");
			return NULL;
		}
	}
	fail(a, "%s: the ACME server did not finish in time", what);
	return NULL;
}

static const char *
chname(const struct acme *a)
{
	return a->cfg.challenge == ACME_TLS_ALPN_01 ? "tls-alpn-01" : "http-01";
}

static int
authorize(struct acme *a, const char *authz_url)
{
	bool alpn_open = false;
	json_t *az = post_json(a, authz_url, NULL, false, NULL, 0, "authorization");
	json_t *ch = NULL, *v;
	const char *st, *token, *curl_ = NULL;
	size_t i;
	int r = -1;

	if (az == NULL)
		return -1;
	st = json_string_value(json_object_get(az, "status"));
	if (st && strcmp(st, "valid") == 0) {
		json_decref(az);
		return 0;
	}
	json_array_foreach(json_object_get(az, "challenges"), i, v) {
		const char *t = json_string_value(json_object_get(v, "type"));

		if (t && strcmp(t, a->cfg.challenge == ACME_TLS_ALPN_01 ? "tls-alpn-01" :
		    "http-01") == 0)
			ch = v;
	}
	if (ch == NULL || (token = json_string_value(json_object_get(ch, "token"))) == NULL ||
	    (curl_ = json_string_value(json_object_get(ch, "url"))) == NULL ||
	    strlen(token) > 200 || strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
		"qrstuvwxyz0123456789-_") != strlen(token)) {
		fail(a, "the ACME server offers no usable %s challenge for %s", chname(a),
		    a->hostname);
		json_decref(az);
		return -1;
	}
	pthread_mutex_lock(&a->lock);
	str_copy(a->token, token, sizeof(a->token));
	snprintf(a->keyauth, sizeof(a->keyauth), "%s.%s", token, a->thumb);
	pthread_mutex_unlock(&a->lock);
	if (a->cfg.challenge == ACME_TLS_ALPN_01) {
		X509 *x;
		EVP_PKEY *k;

		if (a->cfg.alpn_cert == NULL ||
		    acme_alpn_cert_make(a->hostname, a->keyauth, &x, &k) != 0) {
			fail(a, "cannot make the tls-alpn-01 challenge certificate");
			goto out;
		}
		a->cfg.alpn_cert(a->cfg.arg, x, k);
		alpn_open = true;
		X509_free(x);
		EVP_PKEY_free(k);
	}
	{
		char cu[1024];
		json_t *cr;

		str_copy(cu, curl_, sizeof(cu));
		json_decref(az);
		az = NULL;
		if ((cr = post_json(a, cu, "{}", false, NULL, 0, "challenge")) == NULL)
			goto out;
		json_decref(cr);
	}
	if ((az = poll_status(a, authz_url, "valid", "authorization")) == NULL)
		goto out;
	st = json_string_value(json_object_get(az, "status"));
	if (st && strcmp(st, "valid") == 0) {
		/* the CA's word on which challenge it validated */
		json_array_foreach(json_object_get(az, "challenges"), i, v) {
			const char *cs = json_string_value(json_object_get(v, "status"));
			const char *ct = json_string_value(json_object_get(v, "type"));
			const char *cu = json_string_value(json_object_get(v, "url"));

			if (cs && strcmp(cs, "valid") == 0)
				log_info("msg=\"acme: challenge validated\" hostname=%s type=%s "
				    "url=%s", a->hostname, ct ? ct : "?", cu ? cu : "?");
		}
		r = 0;
	} else {
		/* the challenge's error says why */
		const char *detail = NULL, *type = NULL;

		json_array_foreach(json_object_get(az, "challenges"), i, v) {
			json_t *e = json_object_get(v, "error");

			if (e) {
				detail = json_string_value(json_object_get(e, "detail"));
				type = json_string_value(json_object_get(e, "type"));
			}
		}
		fail(a, "the %s challenge for %s failed (authorization %s): %s%s%s",
		    chname(a), a->hostname, st ? st : "?", type ? type : "", type && detail ? ": " : "",
		    detail ? detail : "no detail");
	}
out:
	json_decref(az);
	if (alpn_open)
		a->cfg.alpn_cert(a->cfg.arg, NULL, NULL);
	pthread_mutex_lock(&a->lock);
	a->token[0] = 0;
	wipe(a->keyauth, sizeof(a->keyauth));
	pthread_mutex_unlock(&a->lock);
	return r;
}

static int
account(struct acme *a)
{
	json_t *pl = json_object(), *acct;
	char *ps, loc[1024] = "";
	const char *u = json_string_value(json_object_get(a->dir, "newAccount"));

	if (u == NULL) {
		json_decref(pl);
		fail(a, "ACME directory has no newAccount");
		return -1;
	}
	json_object_set_new(pl, "termsOfServiceAgreed", json_true());
	if (a->email && a->email[0]) {
		char m[300];

		snprintf(m, sizeof(m), "mailto:%s", a->email);
		json_object_set_new(pl, "contact", json_pack("[s]", m));
	}
	ps = json_dumps(pl, JSON_COMPACT);
	json_decref(pl);
	acct = ps ? post_json(a, u, ps, true, loc, sizeof(loc), "newAccount") : NULL;
	free(ps);
	if (acct == NULL)
		return -1;
	json_decref(acct);
	if (loc[0] == 0) {
		fail(a, "newAccount: no account URL (Location) in the reply");
		return -1;
	}
	free(a->kid);
	a->kid = strdup(loc);
	return 0;
}

static int
issue(struct acme *a)
{
	struct resp r;
	json_t *order = NULL, *v;
	char order_url[1024] = "", *pl = NULL, *csr = NULL;
	EVP_PKEY *ck = NULL;
	const char *u;
	size_t i;
	int rc = -1;

	a->why[0] = 0;
	free(a->nonce);
	a->nonce = NULL;
	json_decref(a->dir);
	a->dir = NULL;
	if (http(a, "GET", a->directory, NULL, &r) != 0)
		return -1;
	if (r.status != 200 || r.body == NULL || (a->dir = json_loads(r.body, 0, NULL)) == NULL) {
		fail(a, "ACME directory %s: HTTP %ld, not a directory", a->directory, r.status);
		free(r.body);
		return -1;
	}
	free(r.body);
	/* the account key: kept, made once */
	if (a->account == NULL && (a->account = key_load(a->account_key_path)) == NULL) {
		if (access(a->account_key_path, F_OK) == 0) {
			fail(a, "cannot read the ACME account key %s", a->account_key_path);
			return -1;
		}
		if ((a->account = key_new()) == NULL || key_save(a->account_key_path, a->account) != 0) {
			fail(a, "cannot write the ACME account key %s: %s", a->account_key_path,
			    strerror(errno));
			return -1;
		}
		log_info("msg=\"acme: new account key\" path=%s", a->account_key_path);
	}
	if (jwk_of(a) != 0) {
		fail(a, "the ACME account key %s is not a P-256 key", a->account_key_path);
		return -1;
	}
	if (account(a) != 0)
		return -1;
	if ((u = json_string_value(json_object_get(a->dir, "newOrder"))) == NULL) {
		fail(a, "ACME directory has no newOrder");
		return -1;
	}
	{
		json_t *p = json_pack("{s:[{s:s, s:s}]}", "identifiers", "type", "dns", "value",
		    a->hostname);

		pl = json_dumps(p, JSON_COMPACT);
		json_decref(p);
	}
	if (pl == NULL || (order = post_json(a, u, pl, false, order_url, sizeof(order_url),
	    "newOrder")) == NULL)
		goto out;
	log_info("msg=\"acme: order placed\" hostname=%s order=%s", a->hostname, order_url);
	json_array_foreach(json_object_get(order, "authorizations"), i, v) {
		if (json_string_value(v) == NULL || authorize(a, json_string_value(v)) != 0)
			goto out;
	}
	/* finalize with a CSR of a new certificate key */
	if ((ck = key_new()) == NULL || (csr = make_csr(a, ck)) == NULL) {
		fail(a, "cannot make the certificate key or CSR");
		goto out;
	}
	free(pl);
	pl = NULL;
	{
		json_t *p = json_pack("{s:s}", "csr", csr);
		json_t *fin;

		pl = json_dumps(p, JSON_COMPACT);
		json_decref(p);
		if ((u = json_string_value(json_object_get(order, "finalize"))) == NULL) {
			fail(a, "newOrder: no finalize URL");
			goto out;
		}
		if ((fin = post_json(a, u, pl, false, NULL, 0, "finalize")) == NULL)
			goto out;
		json_decref(fin);
	}
	if (order_url[0] == 0) {
		fail(a, "newOrder: no order URL (Location)");
		goto out;
	}
	json_decref(order);
	if ((order = poll_status(a, order_url, "valid", "order")) == NULL)
		goto out;
	if ((u = json_string_value(json_object_get(order, "status"))) == NULL ||
	    strcmp(u, "valid") != 0 ||
	    (u = json_string_value(json_object_get(order, "certificate"))) == NULL) {
		json_t *e = json_object_get(order, "error");

		fail(a, "order for %s ended %s: %s", a->hostname,
		    json_string_value(json_object_get(order, "status")) ?: "?",
		    e && json_string_value(json_object_get(e, "detail")) ?
		    json_string_value(json_object_get(e, "detail")) : "no detail");
		goto out;
	}
	if (post(a, u, NULL, false, &r, "certificate download") != 0)
		goto out;
	if (r.body == NULL || strstr(r.body, "-----BEGIN CERTIFICATE-----") == NULL) {
		fail(a, "certificate download: not a PEM chain");
		free(r.body);
		goto out;
	}
	/* the key first: a cert.pem always has its key on disk */
	if (key_save(a->cert_key_path, ck) != 0 ||
	    write_private(a->cert_path, r.body, r.len) != 0) {
		fail(a, "cannot write %s: %s", a->cert_path, strerror(errno));
		free(r.body);
		goto out;
	}
	free(r.body);
	rc = 0;
out:
	json_decref(order);
	EVP_PKEY_free(ck);
	free(pl);
	free(csr);
	return rc;
}

/* ---- lifecycle ---- */

static void *
renew_thread(void *arg)
{
	struct acme *a = arg;
	int64_t backoff = 30;

	for (;;) {
		time_t nb = 0, na = 0, now = time(NULL), at;
		int64_t wait_ms;

		if (cert_check(a, &nb, &na, NULL, 0) != 0)
			at = now;
		else
			at = renew_at(a, nb, na);
		wait_ms = at > now ? ((int64_t)(at - now)) * 1000 : 0;
		if (wait_ms > 3600 * 1000)
			wait_ms = 3600 * 1000;	/* recheck hourly (clock changes) */
		if (wait_ms && wait_stop(a, wait_ms))
			break;
		if (time(NULL) < at)
			continue;
		log_info("msg=\"acme: renewing the certificate\" hostname=%s", a->hostname);
		if (issue(a) == 0) {
			char serial[80] = "";

			cert_check(a, &nb, &na, serial, sizeof(serial));
			log_info("msg=\"acme: certificate renewed\" hostname=%s serial=%s "
			    "not_after=%lld", a->hostname, serial, (long long)na);
			backoff = 30;
			if (a->cfg.on_renew)
				a->cfg.on_renew(a->cfg.arg);
		} else {
			log_error("msg=\"acme: renewal failed; retrying\" hostname=%s err=\"%s\" "
			    "retry_in=%llds", a->hostname, a->why, (long long)backoff);
			if (wait_stop(a, backoff * 1000))
				break;
			if (backoff < 3600)
				backoff *= 2;
		}
	}
	return NULL;
}

static char *
dup_or_null(const char *s)
{
	return s && s[0] ? strdup(s) : NULL;
}

void
acme_state_paths(const char *state_dir, const char *hostname, char *cert, size_t certlen,
		 char *key, size_t keylen)
{
	snprintf(cert, certlen, "%s/%s.crt", state_dir, hostname);
	snprintf(key, keylen, "%s/%s.key", state_dir, hostname);
}

int
acme_start(const struct acme_config *cfg, struct acme **out, char *why, size_t whylen)
{
	struct acme *a;
	time_t nb, na;
	char serial[80] = "";

	*out = NULL;
	if (cfg->hostname == NULL || cfg->hostname[0] == 0 || strlen(cfg->hostname) > 253 ||
	    strspn(cfg->hostname, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
	    != strlen(cfg->hostname)) {
		snprintf(why, whylen, "acme_hostname must be a DNS name");
		return ERR_INVALID;
	}
	if (cfg->state_dir == NULL || cfg->state_dir[0] == 0) {
		snprintf(why, whylen, "ACME needs a state directory");
		return ERR_INVALID;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return ERR_NOMEM;
	a->cfg = *cfg;
	a->hostname = strdup(cfg->hostname);
	a->email = dup_or_null(cfg->email);
	a->directory = strdup(cfg->directory && cfg->directory[0] ? cfg->directory :
	    ACME_DEFAULT_DIRECTORY);
	a->state_dir = strdup(cfg->state_dir);
	a->http_listen = dup_or_null(cfg->http_listen);
	a->ca_file = dup_or_null(cfg->ca_file);
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->stop_lock, NULL);
	pthread_cond_init(&a->stop_cond, NULL);
	snprintf(a->account_key_path, sizeof(a->account_key_path), "%s/account.key", cfg->state_dir);
	acme_state_paths(cfg->state_dir, cfg->hostname, a->cert_path, sizeof(a->cert_path),
	    a->cert_key_path, sizeof(a->cert_key_path));
	if (mkdir(a->state_dir, 0700) != 0 && errno != EEXIST) {
		snprintf(why, whylen, "cannot create the ACME state directory %s: %s",
		    a->state_dir, strerror(errno));
		acme_stop(a);
		return ERR_IO;
	}
	if (cfg->challenge == ACME_HTTP_01 && listener_start(a) != 0) {
		snprintf(why, whylen, "%s", a->why);
		acme_stop(a);
		return ERR_IO;
	}
	if (cert_check(a, &nb, &na, serial, sizeof(serial)) == 0 && time(NULL) < renew_at(a, nb, na)) {
		log_info("msg=\"acme: using the existing certificate\" hostname=%s serial=%s "
		    "not_after=%lld path=%s", a->hostname, serial, (long long)na, a->cert_path);
	} else {
		log_info("msg=\"acme: requesting a certificate\" hostname=%s directory=%s",
		    a->hostname, a->directory);
		if (issue(a) != 0) {
			/* a still valid certificate is better than none */
			if (cert_check(a, &nb, &na, NULL, 0) == 0) {
				log_error("msg=\"acme: renewal failed; serving the current "
				    "certificate\" err=\"%s\"", a->why);
			} else {
				snprintf(why, whylen, "ACME: %s", a->why);
				acme_stop(a);
				return ERR_IO;
			}
		} else {
			cert_check(a, &nb, &na, serial, sizeof(serial));
			log_info("msg=\"acme: certificate issued\" hostname=%s serial=%s "
			    "not_after=%lld", a->hostname, serial, (long long)na);
		}
	}
	*out = a;
	return 0;
}

int
acme_run(struct acme *a)
{
	if (pthread_create(&a->thread, NULL, renew_thread, a) != 0)
		return ERR_INTERNAL;
	a->running = true;
	return 0;
}

const char *
acme_cert_path(const struct acme *a)
{
	return a->cert_path;
}

const char *
acme_key_path(const struct acme *a)
{
	return a->cert_key_path;
}

void
acme_stop(struct acme *a)
{
	if (a == NULL)
		return;
	if (a->running) {
		pthread_mutex_lock(&a->stop_lock);
		a->stop = true;
		pthread_cond_broadcast(&a->stop_cond);
		pthread_mutex_unlock(&a->stop_lock);
		pthread_join(a->thread, NULL);
	}
	if (a->mhd)
		MHD_stop_daemon(a->mhd);
	EVP_PKEY_free(a->account);
	json_decref(a->dir);
	free(a->kid);
	free(a->nonce);
	free(a->hostname);
	free(a->email);
	free(a->directory);
	free(a->state_dir);
	free(a->http_listen);
	free(a->ca_file);
	wipe(a->keyauth, sizeof(a->keyauth));
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->stop_lock);
	pthread_cond_destroy(&a->stop_cond);
	free(a);
}
