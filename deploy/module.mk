# deploy/: `make install` of the binaries, systemd units, example configs,
# manual pages and documentation.
#
#   make install                       into /usr/local (configs into /etc/wiremesh)
#   make install PREFIX=/usr DESTDIR=/tmp/pkgroot
#
# Example configs go to $(DOCDIR)/examples; they are also copied to
# $(SYSCONFDIR)/wiremesh, but never over a file that is already there.

PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
SYSCONFDIR  ?= /etc
DATADIR     ?= $(PREFIX)/share
MANDIR      ?= $(DATADIR)/man
DOCDIR      ?= $(DATADIR)/doc/wiremesh
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

INSTALL_UNITS    := $(wildcard deploy/systemd/*.service)
INSTALL_CONFIGS  := deploy/config/server.hujson deploy/config/acls.hujson deploy/config/derpmap.json
INSTALL_EXAMPLES := $(INSTALL_CONFIGS) $(wildcard deploy/firewall/*) deploy/nginx/wiremesh.conf \
                    deploy/Containerfile
INSTALL_MAN1     := $(wildcard deploy/man/*.1)
INSTALL_MAN8     := $(wildcard deploy/man/*.8)
INSTALL_DOCS     := $(wildcard docs/*.md docs/openapi.json) README.md

# Paths in the units follow the chosen directories.
INSTALL_SED := -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/wiremesh|$(SYSCONFDIR)/wiremesh|g' \
               -e 's|/usr/local/share/doc/wiremesh|$(DOCDIR)|g'

install: binaries
	@$(if $(Q),echo "  INSTALL $(DESTDIR)$(PREFIX)")
	$(Q)install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	    $(DESTDIR)$(DOCDIR)/examples/firewall $(DESTDIR)$(DOCDIR)/examples/nginx \
	    $(DESTDIR)$(SYSCONFDIR)/wiremesh
	$(Q)install -m 0755 $(BINARIES) $(DESTDIR)$(BINDIR)/
	$(Q)for u in $(INSTALL_UNITS); do \
	    sed $(INSTALL_SED) "$$u" > $(DESTDIR)$(UNITDIR)/$$(basename "$$u") && \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename "$$u") || exit 1; done
	$(Q)install -m 0644 deploy/systemd/wiremesh.sysusers $(DESTDIR)$(SYSUSERSDIR)/wiremesh.conf
	$(Q)install -m 0644 $(INSTALL_CONFIGS) deploy/Containerfile $(DESTDIR)$(DOCDIR)/examples/
	$(Q)install -m 0644 $(wildcard deploy/firewall/*) $(DESTDIR)$(DOCDIR)/examples/firewall/
	$(Q)install -m 0644 deploy/nginx/wiremesh.conf $(DESTDIR)$(DOCDIR)/examples/nginx/
	$(Q)for c in $(INSTALL_CONFIGS); do \
	    d=$(DESTDIR)$(SYSCONFDIR)/wiremesh/$$(basename "$$c"); \
	    if [ -e "$$d" ]; then echo "  KEEP    $$d (exists)"; \
	    else install -m 0644 "$$c" "$$d" || exit 1; fi; done
	$(Q)install -m 0644 $(INSTALL_DOCS) $(DESTDIR)$(DOCDIR)/
	$(Q)$(if $(INSTALL_MAN1),install -d -m 0755 $(DESTDIR)$(MANDIR)/man1 && \
	    install -m 0644 $(INSTALL_MAN1) $(DESTDIR)$(MANDIR)/man1/)
	$(Q)$(if $(INSTALL_MAN8),install -d -m 0755 $(DESTDIR)$(MANDIR)/man8 && \
	    install -m 0644 $(INSTALL_MAN8) $(DESTDIR)$(MANDIR)/man8/)

# Removes what `make install` put in place, except the configs in $(SYSCONFDIR).
uninstall:
	$(Q)for b in $(notdir $(BINARIES)); do rm -f $(DESTDIR)$(BINDIR)/$$b; done
	$(Q)for u in $(notdir $(INSTALL_UNITS)); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done
	$(Q)rm -f $(DESTDIR)$(SYSUSERSDIR)/wiremesh.conf
	$(Q)for m in $(notdir $(INSTALL_MAN1)); do rm -f $(DESTDIR)$(MANDIR)/man1/$$m; done
	$(Q)for m in $(notdir $(INSTALL_MAN8)); do rm -f $(DESTDIR)$(MANDIR)/man8/$$m; done
	$(Q)rm -rf $(DESTDIR)$(DOCDIR)

.PHONY: install uninstall
