#!/bin/sh
# Installs the release build into a staging prefix, then builds and runs a
# tiny program against the installed copy twice: with pkg-config and with
# CMake's find_package(genserver).
set -eu
build=$(realpath "$1")
stage=$(realpath -m "$2")
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$stage"
cmake --install "$build" --prefix "$stage" >/dev/null
work="$stage/check"
mkdir -p "$work"

PKG_CONFIG_PATH="$stage/lib/pkgconfig:$stage/lib/x86_64-linux-gnu/pkgconfig:${PKG_CONFIG_PATH:-}"
export PKG_CONFIG_PATH
cc -std=c11 -Wall -Wextra -Werror -o "$work/hello_pc" "$here/hello.c" \
   $(pkg-config --cflags genserver) -L"$stage/lib" -Wl,-rpath,"$stage/lib" $(pkg-config --libs genserver)
"$work/hello_pc"

cmake -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$stage" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/hello_cmake"
echo "install check: ok (pkg-config and find_package)"
