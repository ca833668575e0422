# attention, adamw, gradnorm: files of this area (see Makefile.am).
