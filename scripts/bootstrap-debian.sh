#!/bin/sh
# Install the Debian packages qseries needs, or say how to.
#
# Usage: scripts/bootstrap-debian.sh SECTION...
# The packages are those of the sections of scripts/debian-packages
# (the one list; see its header).  As root, missing packages are
# installed with apt-get.  Otherwise the exact apt-get command is
# printed and the script fails.
set -eu

list="$(dirname "$0")/debian-packages"
[ $# -gt 0 ] || {
    echo "usage: $0 SECTION... (the sections of $list)" >&2
    exit 2
}

# "PACKAGE [unless COMMAND]" lines of the sections asked for, comments
# and blank lines dropped; an unknown section is an error.
lines=$(awk -v wanted=" $* " '
    { sub(/#.*/, "") }
    /^[ \t]*\[[^]]+\][ \t]*$/ {
        gsub(/[][ \t]/, ""); section = $0; known[section] = 1; next
    }
    NF && index(wanted, " " section " ") { print }
    END {
        n = split(wanted, asked, " ")
        for (i = 1; i <= n; i++) if (!(asked[i] in known)) {
            print "no section [" asked[i] "] in the list" > "/dev/stderr"
            bad = 1
        }
        exit bad
    }' "$list") || {
    echo "$0: fix the sections asked for or $list" >&2
    exit 2
}

missing=""
while read -r pkg cond command; do
    [ -n "$pkg" ] || continue
    case "$cond:$command" in
        : | unless:?*) ;;
        *) echo "$0: '$pkg $cond $command' in $list: write PACKAGE [unless COMMAND]" >&2
           exit 2 ;;
    esac
    if [ "$cond" = unless ] && command -v "$command" >/dev/null 2>&1; then
        continue
    fi
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *" installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done <<EOF
$lines
EOF
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "qseries needs these Debian packages:$missing" >&2
    echo "install them as root with:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi
echo "bootstrap: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086 # word splitting of the package list is wanted
apt-get install -y -q --no-install-recommends $missing >/dev/null
