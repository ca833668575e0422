# model: files of this area (see Makefile.am).
