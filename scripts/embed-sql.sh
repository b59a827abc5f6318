#!/bin/sh
# Turns migrations/NNNN_name.sql files into a C table (server/migrations.h).
set -eu
echo '/* Generated from the migrations folder by scripts/embed-sql.sh. Do not edit. */'
echo '#include "server/migrations.h"'
echo 'const struct migration migrations[] = {'
for f in "$@"; do
	base=$(basename "$f" .sql)
	num=${base%%_*}
	name=${base#*_}
	printf '\t{ %d, "%s",\n' "$(expr "$num" + 0)" "$name"
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t  "/' -e 's/$/\\n"/' "$f"
	printf '\t},\n'
done
echo '};'
echo "const int migrations_count = $#;"
