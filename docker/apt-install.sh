#!/usr/bin/env bash
# apt-get install for image builds: `apt-install PACKAGE...`, run with the extra_ca build
# secret mounted. apt trusts that optional CA (a TLS-inspecting proxy's) for this command
# only; the setting and the package lists are removed before the layer is written.
set -euo pipefail
ca=/run/secrets/extra_ca
if grep -qs 'BEGIN CERTIFICATE' "$ca"; then
  echo "Acquire::https::CAInfo \"$ca\";" > /etc/apt/apt.conf.d/99-build-ca
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
rm -rf /var/lib/apt/lists/* /etc/apt/apt.conf.d/99-build-ca
