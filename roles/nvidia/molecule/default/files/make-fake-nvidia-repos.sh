#!/bin/bash
# Stand-ins for NVIDIA's two flat apt repositories, for the role test only: dummy
# nvidia-open and nvidia-container-toolkit packages, Release files signed with a
# throwaway key, served from /srv/fake-nvidia over file://.
set -euo pipefail
root=/srv/fake-nvidia
rm -rf "$root" && mkdir -p "$root/cuda" "$root/toolkit" "$root/build"
export GNUPGHOME=$root/gnupg
mkdir -m 0700 "$GNUPGHOME"

make_deb() {  # name dir [file-to-install content]
    local name=$1 repo=$2 pkg=$root/build/$1
    mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/doc/$name"
    cat >"$pkg/DEBIAN/control" <<CONTROL
Package: $name
Version: 999.0-zk0test
Architecture: all
Maintainer: zk0 tests <tests@zk0.invalid>
Description: stand-in for NVIDIA's $name (zk0 role test)
CONTROL
    echo "stand-in package for the zk0 nvidia role test" >"$pkg/usr/share/doc/$name/README"
    if [ "$name" = nvidia-container-toolkit ]; then
        mkdir -p "$pkg/usr/bin"
        printf '#!/bin/sh\nexec runc "$@"\n' >"$pkg/usr/bin/nvidia-container-runtime"
        chmod 0755 "$pkg/usr/bin/nvidia-container-runtime"
    fi
    dpkg-deb --root-owner-group --build "$pkg" "$root/$repo/${name}_999.0-zk0test_all.deb" >/dev/null
}
make_deb nvidia-open cuda
make_deb nvidia-container-toolkit toolkit

gpg --batch --quiet --passphrase '' --quick-gen-key 'zk0 test repository' ed25519 sign never
gpg --batch --quiet --armor --export >"$root/key.asc"
for repo in cuda toolkit; do
    (
        cd "$root/$repo"
        apt-ftparchive packages . >Packages
        apt-ftparchive release . >Release
        gpg --batch --quiet --yes --clearsign -o InRelease Release
    )
done
rm -rf "$root/build" "$GNUPGHOME"
chmod -R a+rX "$root"
