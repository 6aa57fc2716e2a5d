#!/bin/sh
# Build-time only: run a command that downloads packages, trusting an extra CA when the
# build was given one as the BuildKit secret "extra_ca" (e.g. a TLS-intercepting proxy's CA).
# The combined bundle goes to /run/build-ca, a tmpfs mount of the same RUN, so neither the
# secret nor the bundle ever lands in an image layer. Without the secret: plain exec.
set -eu
secret=/run/secrets/extra_ca
if [ -s "$secret" ]; then
    bundle=/run/build-ca/bundle.pem
    { cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null || true; cat "$secret"; } >"$bundle"
    export SSL_CERT_FILE="$bundle" PIP_CERT="$bundle" REQUESTS_CA_BUNDLE="$bundle" UV_NATIVE_TLS=1
fi
exec "$@"
