#!/bin/sh
# tests/aarch64/run.sh BUILD_DIR - the runtime on aarch64, under qemu-user.
#
# Cross-compiles (statically: qemu-user 7.2 hangs in pthread_create of a
# dynamically linked aarch64 glibc) the context-switch stress program, the
# ThreadSanitizer stress programs and a 20 s soak, and runs each under
# qemu-aarch64. Installs the cross compiler, qemu-user and Debian's
# arm64 liburcu (multiarch) when they are missing and we are root.
# What this shows: the aarch64 context switch and the runtime's logic work
# on aarch64 code. What it cannot show: aarch64's weak memory ordering,
# since qemu runs the guest on the host's stronger x86 ordering.
set -eu
out=${1:-build}/aarch64
pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
need_install=""
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_install=yes
command -v qemu-aarch64 >/dev/null 2>&1 || need_install=yes
[ -e /usr/lib/aarch64-linux-gnu/liburcu-cds.a ] || need_install=yes
if [ -n "$need_install" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing tools; as root: dpkg --add-architecture arm64; apt-get update;"
        echo "  apt-get install $pkgs liburcu-dev:arm64"
        exit 1
    fi
    echo "installing: $pkgs liburcu-dev:arm64"
    dpkg --add-architecture arm64
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs liburcu-dev:arm64 >/dev/null
fi
mkdir -p "$out"
cc="aarch64-linux-gnu-gcc -O2 -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter -Werror -static -Isrc -Iinclude"  # as CMakeLists.txt
lib="src/queue/*.c src/runtime/*.c -lurcu-cds -lurcu-memb -lpthread"
# The switch alone first: fiber.c and the allocator hook, no runtime.
$cc tests/stress/stress_fiber_switch.c src/runtime/fiber.c src/runtime/alloc.c -lpthread \
    -o "$out/stress_fiber_switch"
qemu-aarch64 "$out/stress_fiber_switch"
for src in tests/stress/stress_*.c; do
    name=$(basename "$src" .c)
    [ "$name" = stress_fiber_switch ] && continue
    # shellcheck disable=SC2086
    $cc "$src" $lib -o "$out/$name"
    timeout 600 qemu-aarch64 "$out/$name"
done
# shellcheck disable=SC2086
$cc tests/soak/soak.c $lib -o "$out/soak"
timeout 600 qemu-aarch64 "$out/soak" --seconds 20
echo "aarch64 (qemu-user): all passed"
