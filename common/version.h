/* SPDX-License-Identifier: MIT */
/*
 * The release every binary reports (`wiremesh version`, `wiremesh-server
 * version`, `wiremesh-derper --version`). WM_GIT_COMMIT may be given by the
 * build (make WM_GIT_COMMIT=...); it is shown after the version.
 */
#ifndef WM_VERSION_H
#define WM_VERSION_H

#define WM_VERSION "0.1.0"

#ifdef WM_GIT_COMMIT
#define WM_VERSION_LONG WM_VERSION " (" WM_GIT_COMMIT ")"
#else
#define WM_VERSION_LONG WM_VERSION
#endif

#endif
