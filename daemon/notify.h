/* notify.h: telling systemd how the daemon is doing (sd_notify); no-ops without systemd. */
#ifndef SESAME_NOTIFY_H
#define SESAME_NOTIFY_H

#include <stdint.h>

void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(const char *status);
void notify_watchdog(void);

/* The watchdog interval systemd asks for (WatchdogSec), in microseconds; 0 when none. */
uint64_t notify_watchdog_usec(void);

#endif
