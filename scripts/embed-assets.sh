#!/bin/sh
# embed-assets.sh DIR FILE...: prints a C file with the admin console's
# assets (server/admin_assets.h): each FILE's text through embed-text.sh,
# named by its path under DIR, with a Content-Type from its extension.
set -eu
dir=$1
shift
here=$(dirname "$0")
echo "/* Generated from $dir by scripts/embed-assets.sh. Do not edit. */"
echo '#include "server/admin_assets.h"'
i=0
for f in "$@"; do
	"$here/embed-text.sh" "admin_asset_$i" "$f" | sed -e 1d -e "s/^const char/static const char/"
	i=$((i + 1))
done
echo 'const struct admin_asset admin_assets[] = {'
i=0
for f in "$@"; do
	name=${f#"$dir"/}
	case $f in
	*.html) type='text/html; charset=utf-8' ;;
	*.js) type='text/javascript; charset=utf-8' ;;
	*.css) type='text/css; charset=utf-8' ;;
	*.svg) type='image/svg+xml' ;;
	*) echo "embed-assets.sh: no content type for $f" >&2; exit 1 ;;
	esac
	printf '\t{ "%s", "%s", admin_asset_%d, sizeof(admin_asset_%d) - 1 },\n' "$name" "$type" "$i" "$i"
	i=$((i + 1))
done
echo '};'
echo "const unsigned admin_assets_count = $#;"
