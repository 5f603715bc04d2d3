#!/usr/bin/env bash
# Installs the OS packages the integration tests use when they are missing and we can
# (root with apt-get). Prints what it did; never fails the build by itself: a test that
# needs a missing tool reports that on its own.
set -u
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 && command -v sftp >/dev/null 2>&1 || need+=(openssh-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
# the console's browser tests: Debian's Chromium and its matching chromedriver
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# the PostgreSQL store's tests start a throw-away cluster with initdb/pg_ctl
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# systemd-analyze checks packaging/cse-gateway.service (tests/packaging); no systemd runs here
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1 || need+=(default-jdk-headless)  # AS4: the independent XML signature verifier
# deadline clocks read local dates in [clocks] timezone (Python's zoneinfo uses the OS tz database)
[ -f /usr/share/zoneinfo/America/Chicago ] || need+=(tzdata)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "os-deps: missing ${need[*]} and cannot install (need root and apt-get); tests needing them will fail" >&2
  exit 0
fi
echo "os-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null \
  || echo "os-deps: apt-get install ${need[*]} failed" >&2
exit 0
