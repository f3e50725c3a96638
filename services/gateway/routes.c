/* routes.c - the routes file: "<prefix> <upstream URL>" per line. */
#include "hearty.h"
#include "gateway.h"

#include <stdio.h>
#include <string.h>

/* Parses one non-comment line into r. Returns 0 or -1. */
static int route_parse(char *line, struct gateway_route *r)
{
	char *save = NULL;
	char *prefix = strtok_r(line, " \t", &save);
	char *url = strtok_r(NULL, " \t", &save);
	size_t ulen;

	if(!prefix || !url || strtok_r(NULL, " \t", &save))
		return -1;
	if(prefix[0] != '/' || strlen(prefix) >= sizeof(r->prefix) || strncmp(url, "http://", 7) != 0 ||
	   strlen(url) <= 7 || strlen(url) >= sizeof(r->upstream))
		return -1;
	snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
	r->prefix_len = strlen(prefix);
	/* "/orders/" and "/orders" mean the same prefix. */
	while(r->prefix_len > 1 && r->prefix[r->prefix_len - 1] == '/')
		r->prefix[--r->prefix_len] = '\0';
	snprintf(r->upstream, sizeof(r->upstream), "%s", url);
	ulen = strlen(r->upstream);
	while(ulen > 7 && r->upstream[ulen - 1] == '/')
		r->upstream[--ulen] = '\0';
	return 0;
}

/* Gives r its dependency, named after its prefix ("/orders" -> "orders"). */
static int route_dependency(struct gateway_route *r, const struct dependency_config *cfg)
{
	r->dep = dependency_new(r->prefix_len > 1 ? r->prefix + 1 : "root", r->upstream, cfg);
	return r->dep ? 0 : -1;
}

int routes_load(struct gateway *gw, const char *path, const struct dependency_config *cfg,
		char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int lineno = 0, rc = 0;

	if(!f) {
		snprintf(err, errlen, "ROUTES_FILE: cannot open %s", path);
		return -1;
	}
	gw->nroutes = 0;
	while(fgets(line, sizeof(line), f)) {
		char *hash = strchr(line, '#');
		lineno++;
		if(hash)
			*hash = '\0';
		line[strcspn(line, "\r\n")] = '\0';
		if(line[strspn(line, " \t")] == '\0')
			continue;
		if(gw->nroutes >= GATEWAY_MAX_ROUTES || route_parse(line, &gw->routes[gw->nroutes]) ||
		   route_dependency(&gw->routes[gw->nroutes], cfg)) {
			snprintf(err, errlen, "%s:%d: expected \"<prefix starting with /> <http:// URL>\""
				 " (at most %d routes)", path, lineno, GATEWAY_MAX_ROUTES);
			rc = -1;
			break;
		}
		gw->nroutes++;
	}
	fclose(f);
	if(!rc && gw->nroutes == 0) {
		snprintf(err, errlen, "%s: no routes", path);
		rc = -1;
	}
	return rc;
}

void routes_free(struct gateway *gw)
{
	for(int i = 0; i < GATEWAY_MAX_ROUTES; i++) {
		dependency_free(gw->routes[i].dep);
		gw->routes[i].dep = NULL;
	}
	gw->nroutes = 0;
}

const struct gateway_route *routes_match(const struct gateway *gw, const char *path)
{
	const struct gateway_route *best = NULL;

	for(int i = 0; i < gw->nroutes; i++) {
		const struct gateway_route *r = &gw->routes[i];
		bool root = r->prefix_len == 1;
		if(strncmp(path, r->prefix, r->prefix_len) != 0)
			continue;
		if(!root && path[r->prefix_len] != '\0' && path[r->prefix_len] != '/')
			continue;
		if(!best || r->prefix_len > best->prefix_len)
			best = r;
	}
	return best;
}
