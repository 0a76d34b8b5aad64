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
PLUGINS=${PLUGINS:-"cargohold-storage-s3 cargohold-storage-azure cargohold-auth-htpasswd cargohold-auth-token cargohold-notify-webhook cargohold-report-sentry"}
PYTHON=${PYTHON:-python3}
set -- "$root" "$root/plugins/cargohold-storage-filesystem" "$@"
for plugin in $PLUGINS; do
    [ -f "$root/plugins/$plugin/setup.cfg" ] || { echo "wheelhouse: no plugin $plugin under plugins/" >&2; exit 2; }
    set -- "$@" "$root/plugins/$plugin"
done
mkdir -p "$dest"
# Each wheel is built from a copy of the tree: pip's in-tree builds would
# leave build/ and *.egg-info behind in the checkout.
exec "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-input \
    -c "$root/constraints.txt" --wheel-dir "$dest" "$@"
