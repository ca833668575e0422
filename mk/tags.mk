# tags: files of this area (see Makefile.am).
# Task tags "<op>:L<layer>:<stage>": one format, one parse, the stage words
# and the interning table of task names (src/tag.h); the engine names tasks
# with them, the lspo policy and the trace read them.
liblspo_la_SOURCES += src/tag.c src/tag.h
check_PROGRAMS += tests/test_tag
TESTS += tests/test_tag
TESTS += tests/test_tags96.sh
dist_check_SCRIPTS += tests/test_tags96.sh
