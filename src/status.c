/* status.c - status codes and their messages. */
#include <errno.h>

#include "internal.h"

const char *lspo_strerror(int status)
{
	static const char *const messages[LSPO_NSTATUS] = {
		[LSPO_OK] = "success",
		[LSPO_EINVAL] = "invalid argument",
		[LSPO_ENOMEM] = "out of memory",
		[LSPO_EIO] = "input/output error",
		[LSPO_EFORMAT] = "malformed file",
		[LSPO_ENODEV] = "no worker can run this",
		[LSPO_ESTARPU] = "StarPU error",
		[LSPO_EBUSY] = "StarPU is already running in this process",
		[LSPO_ENOTSUP] = "not supported by this build",
	};
	if (status < 0 || status >= LSPO_NSTATUS)
		return "unknown status";
	return messages[status];
}

int lspo_status_from_starpu(int rc)
{
	if (rc == -ENODEV)
		return LSPO_ENODEV;
	if (rc == -ENOMEM)
		return LSPO_ENOMEM;
	return rc < 0 ? LSPO_ESTARPU : LSPO_OK;
}
