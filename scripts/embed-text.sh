#!/bin/sh
# embed-text.sh SYMBOL FILE: prints a C file defining `const char SYMBOL[]` with FILE's text.
set -eu
echo "/* Generated from $2 by scripts/embed-text.sh. Do not edit. */"
echo "const char $1[] ="
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t"/' -e 's/$/\\n"/' "$2"
echo ';'
