# trace: files of this area (see Makefile.am).
liblspo_la_SOURCES += src/trace.c src/trace.h
TESTS += tests/test_trace.sh
dist_check_SCRIPTS += tests/test_trace.sh
EXTRA_DIST += bench/compare-schedules bench/simulate-schedules tests/test_sim.sh
check_PROGRAMS += tests/test_trace_cp
TESTS += tests/test_trace_cp
TESTS += tests/test_paje.sh
dist_check_SCRIPTS += tests/test_paje.sh
