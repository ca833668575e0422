#!/bin/sh
# test_exports.sh - liblspo exports its API and nothing else: the dynamic
# symbols liblspo.so defines are exactly the functions include/lspo.h
# declares (every name lspo_*), so internal functions, codelets and kernels
# stay private (configure.ac: -fvisibility=hidden; lspo.h: visibility
# pragmas).  Skips where there is no shared library or no nm.
set -u
lib="$LSPO_BUILDDIR/.libs/liblspo.so"
hdr="$LSPO_SRCDIR/include/lspo.h"
[ -f "$lib" ] || { echo "skip: no $lib (static-only build?)"; exit 77; }
command -v nm > /dev/null || { echo "skip: no nm"; exit 77; }
command -v python3 > /dev/null || { echo "skip: no python3"; exit 77; }
out="$LSPO_BUILDDIR/tests/out/exports"
rm -rf "$out"; mkdir -p "$out"
nm -D --defined-only "$lib" > "$out/nm.txt" || { echo "FAILED: nm -D $lib"; exit 1; }

python3 - "$out/nm.txt" "$hdr" <<'PY'
import re, sys
nm, hdr = sys.argv[1], sys.argv[2]
exported = set()
for line in open(nm):
    f = line.split()
    if len(f) >= 3 and f[1] not in "AUuwv":   # defined code or data (not absolute linker marks)
        exported.add(f[2].split("@")[0])
text = open(hdr).read()
text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)   # comments mention calls, not declarations
text = re.sub(r"//[^\n]*", " ", text)
text = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)
declared = set()
for decl in text.split(";"):
    m = re.search(r"\b(lspo_\w+)\s*\(", decl)
    if m and not re.match(r"\s*(typedef|struct\s+\w+\s*\{|enum\s+\w*\s*\{)", decl):
        declared.add(m.group(1))
bad = []
if len(declared) < 50:
    bad.append("only %d functions found in lspo.h" % len(declared))
other = sorted(s for s in exported if not s.startswith("lspo_"))
if other:
    bad.append("%d exported symbols without the lspo_ prefix: %s%s"
               % (len(other), " ".join(other[:15]), " ..." if len(other) > 15 else ""))
internal = sorted(s for s in exported if s.startswith("lspo_") and s not in declared)
if internal:
    bad.append("%d exported lspo_ symbols that lspo.h does not declare: %s%s"
               % (len(internal), " ".join(internal[:15]), " ..." if len(internal) > 15 else ""))
missing = sorted(declared - exported)
if missing:
    bad.append("%d functions declared in lspo.h but not exported: %s" % (len(missing), " ".join(missing)))
for b in bad:
    print("FAILED: " + b)
if not bad:
    print("test_exports: %d symbols exported, all declared in lspo.h" % len(exported))
sys.exit(1 if bad else 0)
PY
