#!/bin/sh
# Turns migrations/NNNN_name.sql files into a C table (server/migrations.h).
#   embed-sql.sh [-n ARRAY] FILE...   (ARRAY defaults to "migrations";
#   the count is ARRAY_count)
set -eu
var=migrations
if [ "${1:-}" = "-n" ]; then var=$2; shift 2; fi
echo '/* Generated from the migrations folder by scripts/embed-sql.sh. Do not edit. */'
echo '#include "server/migrations.h"'
echo "const struct migration ${var}[] = {"
for f in "$@"; do
	base=$(basename "$f" .sql)
	num=${base%%_*}
	name=${base#*_}
	printf '\t{ %d, "%s",\n' "$(expr "$num" + 0)" "$name"
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t  "/' -e 's/$/\\n"/' "$f"
	printf '\t},\n'
done
echo '};'
echo "const int ${var}_count = $#;"
