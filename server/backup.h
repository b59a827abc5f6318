/* SPDX-License-Identifier: MIT */
/*
 * `wiremesh-server backup` and `wiremesh-server restore`: consistent copies
 * of the SQLite database through SQLite's online backup, safe while a
 * server is running (backup) and checked before they replace anything
 * (restore).
 */
#ifndef WM_BACKUP_H
#define WM_BACKUP_H

/* argv[0] is "backup" or "restore". Returns the exit status. */
int backup_main(int argc, char **argv);

#endif
