#!/usr/bin/env bash
# The one install step for everything the tests need from Debian (and the loopback services they
# start): `python3 dev.py test` runs it, and so does CI through that command. Installs only what
# is missing, so a prepared machine pays a few `command -v` calls.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
need_apt=()
command -v pg_isready >/dev/null || need_apt+=(postgresql)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v nft >/dev/null || need_apt+=(nftables)
command -v ip >/dev/null || need_apt+=(iproute2)
# Tenants' jails (src/wcp360/system/jail.py) are bubblewrap sandboxes.
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
# The jail's helper is C, built by the agent with the host's compiler, statically linked
# (src/wcp360/system/jail_exec.c); the jails' real apps are php-fpm pools and Node apps, and the
# tests speak FastCGI to php-fpm like nginx does.
command -v cc >/dev/null || need_apt+=(gcc)
ls /usr/lib/*/libc.a >/dev/null 2>&1 || need_apt+=(libc6-dev)
ls /usr/sbin/php-fpm* >/dev/null 2>&1 || need_apt+=(php-fpm)
command -v node >/dev/null || need_apt+=(nodejs)
# Websites (tests/system/test_websites.py): the agent's nginx, Pebble (Let's Encrypt's ACME test
# server, with its DNS pebble-challtestsrv), clamd for the upload scan; testssl.sh and wrk for
# scripts/testssl_sites.py and benchmarks/bench_websites.py.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v pebble >/dev/null || need_apt+=(pebble)
[ -x /usr/sbin/clamd ] || need_apt+=(clamav-daemon)
command -v testssl >/dev/null || need_apt+=(testssl.sh)
command -v wrk >/dev/null || need_apt+=(wrk)
# Sign-in through a directory (tests/ldap_server.py): a real OpenLDAP slapd, in a temp directory.
command -v slapd >/dev/null || [ -x /usr/sbin/slapd ] || need_apt+=(slapd)
# The units' exposure scores (systemd-analyze security --offline=true; no systemd as PID 1 needed).
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# A Python the dropped service user may run in the privilege-drop tests (tests/dropping.py).
command -v python3 >/dev/null && [ -x "/usr/bin/$(python3 -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')" ] || need_apt+=(python3)
# The WASI toolchain builds a real C program for the workload tests (TOOLCHAIN-NOTES).
command -v clang >/dev/null || need_apt+=(clang)
command -v wasm-ld >/dev/null || need_apt+=(lld)
[ -d /usr/lib/wasm32-wasi ] || need_apt+=(wasi-libc)
ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 || need_apt+=(libclang-rt-dev-wasm32)
# LLVM 22 and its wasi libc++ build the C++ program that lives by exceptions (tests/programs/cxx.py).
command -v clang++-22 >/dev/null || need_apt+=(clang-22)
command -v wasm-ld-22 >/dev/null || need_apt+=(lld-22)
command -v llvm-ar-22 >/dev/null || need_apt+=(llvm-22)
[ -f /usr/lib/llvm-22/lib/wasm32-wasi/libc++.a ] || need_apt+=(libc++-22-dev-wasm32 libc++abi-22-dev-wasm32)
[ -f /usr/lib/llvm-22/lib/clang/22/lib/wasi/libclang_rt.builtins-wasm32.a ] || need_apt+=(libclang-rt-22-dev-wasm32)
# pip fetches the real programs' wheels from PyPI (tests/programs/pypi.py).
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-deps: missing Debian packages (${need_apt[*]}); run as root or install them" >&2
    exit 1
  fi
  echo "test-deps: installing ${need_apt[*]}" >&2
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The real OpenID provider for the OIDC sign-in tests (tests/oidc_server.py): panva's
# oidc-provider, pinned by tests/oidc/package-lock.json.
oidc_dir="$(dirname "$0")/../tests/oidc"
if [ ! -f "$oidc_dir/node_modules/oidc-provider/package.json" ]; then
  echo "test-deps: installing the test OpenID provider (npm ci in tests/oidc)" >&2
  npm ci --prefix "$oidc_dir" --no-audit --no-fund --loglevel=error >/dev/null
fi

bash "$(dirname "$0")/services.sh"
