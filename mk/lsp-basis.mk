# lsp-basis: the basis of lsp's subspace Adam (issue 15, --lsp-adam-basis):
# Adam in a fixed random rotation per pair, and the moments' move at a refresh.
liblspo_la_SOURCES += codelets/subspace_adam_rot.c codelets/subspace_adam_rot.h \
	src/engine/lsp_basis.c src/engine/lsp_basis.h
check_PROGRAMS += tests/test_lsp_basis
TESTS += tests/test_lsp_basis
