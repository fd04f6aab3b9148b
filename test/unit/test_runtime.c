/*
 * test_runtime.c - graceful shutdown: stop accepting, drain, revoke the
 * lease (records vanish at once), grace limit and the abort hooks at its
 * end, second signal exits now, a lost lease replaced and the records put
 * again, running until a condition.
 */
#include "test/unit/check.h"

#include "core/runtime.h"
#include "core/util.h"
#include "store/process.h"
#include "store/store.h"

#include <event2/event.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static char test_store_url[256];

static void make_store(void)
{
	char dir[] = "/tmp/dyn-test-rt.XXXXXX";
	CHECK(mkdtemp(dir));
	snprintf(test_store_url, sizeof(test_store_url), "file://%s", dir);
}

struct fake_server {
	int stopped;		/* stop_accepting called */
	long busy;		/* in-flight requests */
};

static void fake_stop(void *arg) { ((struct fake_server *)arg)->stopped = 1; }
static long fake_busy(void *arg) { return ((struct fake_server *)arg)->busy; }

static void finish_one(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	((struct fake_server *)arg)->busy = 0;
}

static void send_sigterm(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	raise(SIGTERM);
}

static int key_exists(const char *key)
{
	struct store *s;
	struct store_kv kv;
	CHECK_INT(store_open(test_store_url, NULL, &s), 0);
	int rc = store_get(s, key, &kv);
	if (rc == 0)
		store_kv_free(&kv);
	store_close(s);
	return rc == 0;
}

TEST(sigterm_drains_then_revokes_lease)
{
	struct runtime rt;
	struct fake_server srv = { 0, 1 };
	struct runtime_hooks hooks = { .stop_accepting = fake_stop, .in_flight = fake_busy, .arg = &srv };

	make_store();
	CHECK_INT(runtime_init(&rt, 5000), 0);
	CHECK_INT(store_process_open(&rt, test_store_url, 10000), 0);
	CHECK_INT(store_put(rt.store, "v1/test/me", "x", 1, rt.lease), 0);
	CHECK(key_exists("v1/test/me"));
	runtime_add_hooks(&rt, &hooks);

	struct timeval t_sig = { 0, 50000 }, t_done = { 0, 300000 };
	event_base_once(rt.base, -1, EV_TIMEOUT, send_sigterm, NULL, &t_sig);
	event_base_once(rt.base, -1, EV_TIMEOUT, finish_one, &srv, &t_done);
	uint64_t t0 = mono_ms();
	runtime_run(&rt);
	uint64_t took = mono_ms() - t0;

	CHECK(srv.stopped);
	/* It waited for the in-flight request (done at 300 ms), not the 5 s grace. */
	CHECK_MSG(took >= 280 && took < 2000, "shutdown took %llu ms", (unsigned long long)took);
	/* The lease was revoked: the record is gone now, not after the 10 s TTL. */
	CHECK(!key_exists("v1/test/me"));
	runtime_free(&rt);
}

TEST(grace_period_bounds_the_drain)
{
	struct runtime rt;
	struct fake_server srv = { 0, 3 };	/* never finishes */
	struct runtime_hooks hooks = { .stop_accepting = fake_stop, .in_flight = fake_busy, .arg = &srv };

	CHECK_INT(runtime_init(&rt, 300), 0);
	runtime_add_hooks(&rt, &hooks);
	struct timeval t_sig = { 0, 10000 };
	event_base_once(rt.base, -1, EV_TIMEOUT, send_sigterm, NULL, &t_sig);
	uint64_t t0 = mono_ms();
	runtime_run(&rt);
	uint64_t took = mono_ms() - t0;
	CHECK_MSG(took >= 290 && took < 3000, "shutdown took %llu ms", (unsigned long long)took);
	CHECK(srv.stopped);
	runtime_free(&rt);
}

struct aborting_server {
	struct fake_server srv;
	uint64_t aborted_at;		/* mono_ms of the abort hook */
	int drained;
};

static void abort_all(void *arg)
{
	struct aborting_server *a = arg;
	a->aborted_at = mono_ms();
	a->srv.busy = 0;		/* every call ended with the error */
}

static void note_drained(void *arg)
{
	struct aborting_server *a = arg;
	CHECK(a->aborted_at != 0);	/* after the abort, not before */
	a->drained = 1;
}

TEST(grace_period_end_runs_the_abort_hooks)
{
	struct runtime rt;
	struct aborting_server a = { { 0, 2 }, 0, 0 };
	struct runtime_hooks hooks = { .stop_accepting = fake_stop, .in_flight = fake_busy,
				       .abort = abort_all, .drained = note_drained, .arg = &a };

	CHECK_INT(runtime_init(&rt, 200), 0);
	runtime_add_hooks(&rt, &hooks);
	uint64_t t0 = mono_ms();
	runtime_shutdown(&rt, "test");
	runtime_run(&rt);
	uint64_t took = mono_ms() - t0;
	CHECK(a.srv.stopped && a.drained);
	CHECK_MSG(a.aborted_at - t0 >= 190, "aborted after %llu ms",
		  (unsigned long long)(a.aborted_at - t0));
	/* Once the aborted calls are gone it ends, without the flush allowance. */
	CHECK_MSG(took < 200 + RUNTIME_ABORT_FLUSH_MS, "shutdown took %llu ms",
		  (unsigned long long)took);
	runtime_free(&rt);
}

struct reregister {
	struct runtime *rt;
	int64_t old_lease;
	int renewed;
};

static void put_again(void *arg)
{
	struct reregister *r = arg;
	r->renewed++;
	CHECK(r->rt->lease != 0 && r->rt->lease != r->old_lease);
	CHECK_INT(store_put(r->rt->store, "v1/test/me", "y", 1, r->rt->lease), 0);
}

static int renewed(void *arg)
{
	return ((struct reregister *)arg)->renewed > 0;
}

TEST(lost_lease_is_replaced_and_records_put_again)
{
	struct runtime rt;
	struct store *other;

	make_store();
	CHECK_INT(runtime_init(&rt, 1000), 0);
	CHECK_INT(store_process_open(&rt, test_store_url, 300), 0);
	struct reregister r = { &rt, rt.lease, 0 };
	struct runtime_hooks hooks = { .lease_renewed = put_again, .arg = &r };
	runtime_add_hooks(&rt, &hooks);
	CHECK_INT(store_put(rt.store, "v1/test/me", "x", 1, rt.lease), 0);
	/* Someone else revokes it (as a reaper would after an outage). */
	CHECK_INT(store_open(test_store_url, NULL, &other), 0);
	CHECK_INT(store_lease_revoke(other, rt.lease), 0);
	store_close(other);
	CHECK(!key_exists("v1/test/me"));
	CHECK(runtime_run_until(&rt, renewed, &r, 3000));
	CHECK(!rt.shutting_down);	/* it serves on */
	CHECK_INT(r.renewed, 1);
	CHECK(key_exists("v1/test/me"));
	runtime_free(&rt);
}

static int never(void *arg)
{
	(void)arg;
	return 0;
}

TEST(run_until_is_bounded)
{
	struct runtime rt;
	CHECK_INT(runtime_init(&rt, 1000), 0);
	uint64_t t0 = mono_ms();
	CHECK_INT(runtime_run_until(&rt, never, NULL, 100), 0);
	uint64_t took = mono_ms() - t0;
	CHECK_MSG(took >= 100 && took < 1000, "took %llu ms", (unsigned long long)took);
	runtime_free(&rt);
}

TEST(second_signal_exits_at_once)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct runtime rt;
		struct fake_server srv = { 0, 1 };
		struct runtime_hooks hooks = { .stop_accepting = fake_stop, .in_flight = fake_busy, .arg = &srv };
		if (runtime_init(&rt, 60000) < 0)
			_exit(99);
		runtime_add_hooks(&rt, &hooks);
		runtime_run(&rt);
		_exit(0);
	}
	usleep(200000);
	kill(pid, SIGTERM);
	usleep(200000);
	int status = 0;
	int still_draining = waitpid(pid, &status, WNOHANG) == 0;
	kill(pid, SIGINT);
	uint64_t t0 = mono_ms();
	pid_t done;
	while ((done = waitpid(pid, &status, WNOHANG)) == 0 && mono_ms() - t0 < 3000)
		usleep(10000);
	if (done == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	CHECK(still_draining);
	CHECK(done == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 130,
		  "child status %d", status);
}

int main(void)
{
	return RUN_TESTS();
}
