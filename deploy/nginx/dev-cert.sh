#!/bin/sh
# A self-signed certificate for trying docker compose locally (browsers will warn). Production:
# put your CA-issued full chain and key at deploy/nginx/certs/tls.crt and tls.key instead.
set -eu
dir="$(dirname "$0")/certs"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=${1:-localhost}" \
  -addext "subjectAltName=DNS:${1:-localhost}" -keyout "$dir/tls.key" -out "$dir/tls.crt"
chmod 600 "$dir/tls.key"
echo "wrote $dir/tls.crt and $dir/tls.key"
