/*
 * fuzz_instance_record.c - libFuzzer target for the instance record
 * decoder (endpoint_instance_parse, net/endpoint.h): any bytes must give
 * a record or -EINVAL with the struct cleared, never a crash, a leak or
 * a read past the given length.  What decodes must be usable as
 * dyn-store(5) says: an address whose port (after the last ':') is 1-65535
 * and whose host has no spaces or control bytes, valid names, a path
 * "NS/COMP/EP", metadata that is a JSON object; and written back as a
 * record with cJSON it must decode to the same instance.
 */
#include "net/endpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY "v1/instances/ns/comp/ep/00000000000000a1"

static void same_str(const char *a, const char *b)
{
	if (!a || !b || strcmp(a, b))
		abort();
}

/* The address checks, done again from the text without endpoint.c. */
static void check_address(const char *addr)
{
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr || !colon[1])
		abort();
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535 || colon[1] < '0' || colon[1] > '9')
		abort();
	for (const char *p = addr; p < colon; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '/')
			abort();
	if (addr[0] == '[' ? colon[-1] != ']' : memchr(addr, ':', (size_t)(colon - addr)) != NULL)
		abort();	/* IPv6 only in brackets */
}

static void check_instance(const struct endpoint_instance *in)
{
	char path[3 * (ENDPOINT_NAME_MAX + 1)];

	same_str(in->key, KEY);
	if (!endpoint_name_valid(in->ns) || !endpoint_name_valid(in->component) ||
	    !endpoint_name_valid(in->endpoint) || !in->transport)
		abort();
	snprintf(path, sizeof(path), "%s/%s/%s", in->ns, in->component, in->endpoint);
	same_str(in->path, path);
	check_address(in->address);
	if (!endpoint_address_valid(in->address) || in->pid < 0)
		abort();
	cJSON *meta = cJSON_Parse(in->metadata);
	if (!cJSON_IsObject(meta))
		abort();
	cJSON_Delete(meta);
}

/* Write in back as a record and decode that: the same instance. */
static void round_trip(const struct endpoint_instance *in)
{
	struct endpoint_instance again;
	char id[17];
	cJSON *o = cJSON_CreateObject();

	snprintf(id, sizeof(id), "%016" PRIx64, in->id);
	cJSON_AddStringToObject(o, "namespace", in->ns);
	cJSON_AddStringToObject(o, "component", in->component);
	cJSON_AddStringToObject(o, "endpoint", in->endpoint);
	cJSON_AddStringToObject(o, "instance_id", id);
	cJSON_AddStringToObject(o, "address", in->address);
	cJSON_AddStringToObject(o, "transport", in->transport);
	cJSON_AddNumberToObject(o, "pid", (double)in->pid);
	cJSON_AddItemToObject(o, "metadata", cJSON_Parse(in->metadata));
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text)
		return;		/* out of memory */
	if (endpoint_instance_parse(KEY, text, strlen(text), &again) != 0)
		abort();
	if (again.id != in->id || again.pid != in->pid)
		abort();
	same_str(again.ns, in->ns);
	same_str(again.component, in->component);
	same_str(again.endpoint, in->endpoint);
	same_str(again.address, in->address);
	same_str(again.transport, in->transport);
	same_str(again.metadata, in->metadata);
	same_str(again.path, in->path);
	endpoint_instance_clear(&again);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct endpoint_instance in;

	/* A private copy without a terminator, so that ASan catches any
	 * read past size. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	int rc = endpoint_instance_parse(KEY, buf, size, &in);
	if (rc == 0) {
		check_instance(&in);
		round_trip(&in);
		endpoint_instance_clear(&in);
	} else if (rc != -EINVAL || in.key || in.address || in.ns || in.path) {
		abort();
	}

	/* The input as an address on its own. */
	char *addr = malloc(size + 1);
	if (addr) {
		memcpy(addr, data, size);
		addr[size] = '\0';
		if (strlen(addr) == size && endpoint_address_valid(addr))
			check_address(addr);
		free(addr);
	}
	free(buf);
	return 0;
}
