// SPDX-License-Identifier: MIT
/*
 * Running a helper program (iproute2's `ip`, `nft`) without a shell: argv
 * only, stdin and stdout on /dev/null, the first line of its stderr kept
 * for the caller's error message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/proc.h"

int
proc_run(const char *const argv[], char *err, size_t errlen)
{
	int st, pfd[2];
	char msg[256] = "";
	ssize_t n;
	size_t got = 0;
	pid_t pid;

	if (errlen)
		err[0] = 0;
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return ERR_IO;
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return ERR_IO;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		dup2(pfd[1], 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	while (got < sizeof(msg) - 1 &&
	       (n = read(pfd[0], msg + got, sizeof(msg) - 1 - got)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		got += (size_t)n;
	}
	msg[got] = 0;
	close(pfd[0]);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return ERR_IO;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	msg[strcspn(msg, "\n")] = 0;
	if (errlen)
		snprintf(err, errlen, "%s", WIFEXITED(st) && WEXITSTATUS(st) == 127 && !msg[0] ?
		    "command not found" : msg);
	return ERR_IO;
}
