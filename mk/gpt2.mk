# gpt2: files of this area (see Makefile.am).
