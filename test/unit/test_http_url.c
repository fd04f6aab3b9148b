/*
 * test_http_url.c - the URL printed for a listening address (cmd/http_url.h).
 *
 * The reference is RFC 3986's URL syntax (an IPv6 literal in brackets, a
 * zone's '%' written %25) and curl's acceptance of the result, checked
 * by hand; wildcards become the IPv4 loopback.
 */
#include "cmd/http_url.h"
#include "check.h"

static const char *url(const char *host, int port)
{
	static char buf[320];
	return http_url_for(buf, sizeof(buf), host, port);
}

TEST(ipv4_and_names_as_given)
{
	CHECK_STR(url("127.0.0.1", 8000), "http://127.0.0.1:8000");
	CHECK_STR(url("10.1.2.3", 1), "http://10.1.2.3:1");
	CHECK_STR(url("localhost", 65535), "http://localhost:65535");
}

TEST(wildcards_as_ipv4_loopback)
{
	CHECK_STR(url("0.0.0.0", 8000), "http://127.0.0.1:8000");
	CHECK_STR(url("::", 8000), "http://127.0.0.1:8000");
	CHECK_STR(url("", 8000), "http://127.0.0.1:8000");
}

TEST(ipv6_in_brackets)
{
	CHECK_STR(url("::1", 8000), "http://[::1]:8000");
	CHECK_STR(url("2001:db8::5", 80), "http://[2001:db8::5]:80");
	CHECK_STR(url("fe80::1%eth0", 80), "http://[fe80::1%25eth0]:80");
}

TEST(truncated_to_fit)
{
	char small[12];
	CHECK_STR(http_url_for(small, sizeof(small), "127.0.0.1", 8000), "http://127.");
}

int main(void)
{
	return RUN_TESTS();
}
