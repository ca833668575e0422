# trace: files of this area (see Makefile.am).
liblspo_la_SOURCES += src/trace.c src/trace.h
