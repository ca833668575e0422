/* sched_lspo.h - the `lspo` StarPU scheduling policy. */
#ifndef LSPO_SCHED_LSPO_H
#define LSPO_SCHED_LSPO_H

#include <starpu.h>

/* Installed through starpu_conf.sched_policy when lspo_config.sched is "lspo".
 * Ready tasks wait in one central list ordered by decreasing priority (FIFO
 * among equals); an idle worker takes the first task it can execute. */
extern struct starpu_sched_policy lspo_sched_policy;

#endif
