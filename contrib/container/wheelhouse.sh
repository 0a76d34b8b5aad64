#!/bin/sh
# Build wheels of cargohold and its plugins from this checkout into a
# wheelhouse, for an image (Containerfile) or an offline install.
#
#   contrib/container/wheelhouse.sh DEST [PIP WHEEL OPTIONS...]
#
# With the default options the wheelhouse also holds every third-party
# dependency, at the versions in constraints.txt (which needs the package
# index).  `--no-deps --no-build-isolation` builds only cargohold's own
# wheels, offline.  PLUGINS (space-separated directory names under plugins/)
# picks the plugins; the filesystem driver always comes with the core.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:?usage: wheelhouse.sh DEST [PIP WHEEL OPTIONS...]}
shift
PIP_OPTIONS="$*" # options without spaces, split again below
PLUGINS=${PLUGINS:-"cargohold-storage-s3 cargohold-storage-azure cargohold-auth-htpasswd cargohold-auth-token cargohold-notify-webhook cargohold-report-sentry"}
PYTHON=${PYTHON:-python3}
dirs="core plugins/cargohold-storage-filesystem"
for plugin in $PLUGINS; do
    [ -f "$root/plugins/$plugin/setup.cfg" ] || { echo "wheelhouse: no plugin $plugin under plugins/" >&2; exit 2; }
    dirs="$dirs plugins/$plugin"
done
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
# The wheels are built from a copy of the sources: setuptools would leave
# build/ and *.egg-info behind in the checkout.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
# shellcheck disable=SC2086 # one word per directory
tar -C "$root" -cf - --exclude=build --exclude='*.egg-info' --exclude=__pycache__ --exclude=tests \
    setup.cfg pyproject.toml README.md $dirs | tar -C "$src" -xf -
set -- "$src"
for dir in $dirs; do
    [ "$dir" = core ] || set -- "$@" "$src/$dir"
done
# shellcheck disable=SC2086
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-input \
    -c "$root/constraints.txt" --wheel-dir "$dest" "$@" $PIP_OPTIONS
