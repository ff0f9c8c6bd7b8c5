/*
 * notify.c: the master's messages to systemd. With libsystemd (configure --with-systemd) each
 * call is one sd_notify datagram to $NOTIFY_SOCKET; without it, or when sesamed does not run
 * under systemd, every call does nothing.
 */
#include "autoconfig.h"

#include "notify.h"

#include <stdio.h>
#include <stdlib.h>

#include "clock.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

void notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_reloading(void)
{
	/* MONOTONIC_USEC lets Type=notify-reload (systemd 253+) match this to its request. */
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
		   (unsigned long long)(clock_mono_ns() / 1000u));
}

void notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void notify_status(const char *status)
{
	sd_notifyf(0, "STATUS=%s", status);
}

void notify_watchdog(void)
{
	sd_notify(0, "WATCHDOG=1");
}

uint64_t notify_watchdog_usec(void)
{
	uint64_t usec = 0;
	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

#else

void notify_ready(const char *status)
{
	(void)status;
}

void notify_reloading(void)
{
}

void notify_stopping(void)
{
}

void notify_status(const char *status)
{
	(void)status;
}

void notify_watchdog(void)
{
}

uint64_t notify_watchdog_usec(void)
{
	return 0;
}

#endif
