/*
 * test_client.c - how outbound calls report failures.
 *
 * The classification decides whether a write may be repeated and whether an
 * order may be marked failed, so each case is driven through a real socket:
 * a raw server thread that answers, hangs up or goes away on cue.
 */
#include "hearty.h"
#include "client.h"
#include "check.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char ok_answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

struct raw_server {
	int port;
	int listen_fd;
	int requests_seen;     /* complete request heads read */
	pthread_t thread;
};

static int listen_on(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 8)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads one request head (the tests send no bodies over 0 bytes but POST
 * fields, which arrive with the head for these small requests). */
static bool read_request(int fd)
{
	char buf[4096];
	size_t got = 0;

	while(got < sizeof(buf) - 1) {
		ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if(n <= 0)
			return false;
		got += (size_t)n;
		buf[got] = '\0';
		if(strstr(buf, "\r\n\r\n"))
			return true;
	}
	return false;
}

/* Answers the first request on a keep-alive connection, reads the second,
 * stops listening and hangs up without answering: the callee "processed it
 * and died". */
static void *die_after_second(void *arg)
{
	struct raw_server *rs = arg;
	int fd = accept(rs->listen_fd, NULL, NULL);

	if(fd < 0)
		return NULL;
	if(read_request(fd)) {
		rs->requests_seen++;
		if(send(fd, ok_answer, strlen(ok_answer), 0) < 0) {
			close(fd);
			return NULL;
		}
	}
	if(read_request(fd))
		rs->requests_seen++;
	close(rs->listen_fd);   /* curl's own retry finds nobody listening */
	rs->listen_fd = -1;
	close(fd);
	return NULL;
}

static int post(int port, struct client_result *res)
{
	char url[64];
	struct client_call call = { .method = "POST", .body = "{}", .body_len = 2,
				    .connect_timeout_ms = 500, .timeout_ms = 2000 };

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/pay", port);
	call.url = url;
	return client_call(&call, res);
}

static void test_delivered_then_gone_is_not_connect(void)
{
	struct raw_server rs = { .port = tu_free_port() };
	struct client_result res;
	int rc;

	rs.listen_fd = listen_on(rs.port);
	if(!CHECK(rs.listen_fd >= 0))
		return;
	pthread_create(&rs.thread, NULL, die_after_second, &rs);
	rc = post(rs.port, &res);
	CHECK_INT(rc, HR_OK);
	CHECK_INT(res.status, 200);
	client_result_release(&res);
	/* Same thread, same handle: this request goes out on the reused connection. */
	rc = post(rs.port, &res);
	client_result_release(&res);
	pthread_join(rs.thread, NULL);
	CHECK_INT(rs.requests_seen, 2);
	/* It was delivered: the caller must treat the outcome as unknown. */
	CHECK(rc == HR_ERR_UPSTREAM || rc == HR_ERR_TIMEOUT);
	if(rc == HR_ERR_CONNECT)
		printf("   a delivered request was reported as never sent\n");
}

static void test_refused_is_connect(void)
{
	struct client_result res;
	int port = tu_free_port();

	CHECK_INT(post(port, &res), HR_ERR_CONNECT);
	CHECK_INT(res.status, 0);
	client_result_release(&res);
}

/* Accepts and reads, never answers: a timeout after delivery. */
static void *swallow(void *arg)
{
	struct raw_server *rs = arg;
	int fd = accept(rs->listen_fd, NULL, NULL);

	if(fd < 0)
		return NULL;
	if(read_request(fd))
		rs->requests_seen++;
	tu_sleep_ms(2500);
	close(fd);
	return NULL;
}

static void test_silent_callee_is_timeout(void)
{
	struct raw_server rs = { .port = tu_free_port() };
	struct client_result res;

	rs.listen_fd = listen_on(rs.port);
	if(!CHECK(rs.listen_fd >= 0))
		return;
	pthread_create(&rs.thread, NULL, swallow, &rs);
	CHECK_INT(post(rs.port, &res), HR_ERR_TIMEOUT);
	client_result_release(&res);
	pthread_join(rs.thread, NULL);
	close(rs.listen_fd);
	CHECK_INT(rs.requests_seen, 1);
}

int main(void)
{
	client_global_init();
	RUN(test_refused_is_connect);
	RUN(test_silent_callee_is_timeout);
	RUN(test_delivered_then_gone_is_not_connect);
	return check_done();
}
