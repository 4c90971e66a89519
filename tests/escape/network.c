/*
 * Other instances, the host's network and IPC: alice's X server and TLS
 * port, host services on loopback and on the host's address, host Unix
 * sockets (path and abstract), vsock, raw sockets, host SysV IPC.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/socket.h>

#include "escape.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

void a_alice_x_abstract(void)
{
	char name[64];

	snprintf(name, sizeof(name), "/tmp/.X11-unix/X%s", conf("alice_display"));
	expect_fail(connect_unix(name, 1), "connect @/tmp/.X11-unix/X<alice> (abstract)");
}

void a_alice_x_path(void)
{
	char name[64];

	snprintf(name, sizeof(name), "/tmp/.X11-unix/X%s", conf("alice_display"));
	expect_fail(connect_unix(name, 0), "connect /tmp/.X11-unix/X<alice>");
}

void a_alice_x_tcp(void)
{
	expect_fail(connect_tcp(AF_INET, "127.0.0.1", 6000 + conf_long("alice_display")), "connect 127.0.0.1:6000+N");
}

void a_alice_tls_port(void)
{
	expect_fail(connect_tcp(AF_INET, "127.0.0.1", conf_long("alice_port")), "connect 127.0.0.1:<alice's port>");
}

/* Alice's desktop serves plain HTTP on her Unix socket: only the front door may reach it. */
void a_alice_desktop_socket(void)
{
	expect_fail(connect_unix(conf("alice_desktop_sock"), 0), "connect <alice's desktop.sock>");
}

void a_host_loopback_tcp(void)
{
	struct acc a = { .len = 0 };

	acc_fail(&a, connect_tcp(AF_INET, "127.0.0.1", conf_long("host_tcp_port")), "127.0.0.1:<host service>");
	acc_fail(&a, connect_tcp(AF_INET6, "::1", conf_long("host_tcp6_port")), "[::1]:<host service>");
	acc_say(&a);
}

void a_host_other_address(void)
{
	const char *ip = *conf("host_ip") ? conf("host_ip") : "192.0.2.1";
	char what[96];

	snprintf(what, sizeof(what), "%s:<host service>", ip);
	expect_fail(connect_tcp(AF_INET, ip, conf_long("host_tcp_port")), what);
}

void a_host_abstract_socket(void)
{
	expect_fail(connect_unix(conf("host_abstract"), 1), "connect @<host abstract socket>");
}

void a_host_unix_sockets(void)
{
	struct acc a = { .len = 0 };
	const char *paths[] = { conf("host_unix"), "/run/dbus/system_bus_socket", "/run/systemd/private",
				"/run/systemd/notify", "/run/systemd/journal/stdout", "/var/run/docker.sock" };

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (*paths[i])
			acc_fail(&a, connect_unix(paths[i], 0), paths[i]);
	acc_say(&a);
}

void a_vsock(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0)
		close(fd);
	expect_fail(fd, "socket(AF_VSOCK) (the hypervisor)");
}

void a_raw_sockets(void)
{
	struct acc a = { .len = 0 };
	int fd;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		close(fd);
	acc_fail(&a, fd, "AF_PACKET");
	fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (fd >= 0)
		close(fd);
	acc_fail(&a, fd, "AF_INET raw");
	acc_say(&a);
}

void a_host_sysv_ipc(void)
{
	long key = conf_long("sysv_key");
	char buf[16384];
	int id;

	if (key <= 0) {
		UNJUDGED("no sysv_key in the configuration");
		return;
	}
	id = shmget((key_t) key, 0, 0);
	if (id >= 0) {
		ESCAPED("the host's SysV shm segment (key %ld) is visible: id %d", key, id);
		return;
	}
	read_file("/proc/sysvipc/shm", buf, sizeof(buf));
	BLOCKED("shmget(host key %ld): %s (own IPC namespace)", key, errname(errno));
}
