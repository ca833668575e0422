# gpt2-ops: files of this area (see Makefile.am).
