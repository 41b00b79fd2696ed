/*
 * kfloor: the kernel's own cost of reading what netpath-exporter reads on every poll.
 *
 * The exporter's poll CPU is judged against this floor (issue #15, design/performance.md):
 * a minimal reader outside Python that asks the kernel for the same counters and does
 * almost nothing with the answer. What it costs is what any reader must pay; what the
 * daemon costs beyond it is the daemon's own work.
 *
 *   --rules nft     an NFT_MSG_GETRULE dump of every table (NFPROTO_UNSPEC), read to
 *                   NLMSG_DONE; each rule's `counter` expression gives packets/bytes
 *   --rules nft-chains  the same counters read as a reader of big tables must: an
 *                   NFT_MSG_GETCHAIN dump, then one NFT_MSG_GETRULE dump per chain (table
 *                   and chain named in the request). The kernel resumes a dump by walking
 *                   the table from its start for every datagram, so one dump of a table of
 *                   ~100k rules (kube-proxy's nat) costs seconds; per chain it does not
 *   --rules legacy  IPT_SO_GET_INFO + IPT_SO_GET_ENTRIES (and IP6T_*) for filter, nat,
 *                   mangle and raw, each only when /proc/net/ip{,6}_tables_names lists it:
 *                   asking for an absent table would load and create it
 *   --links         an RTM_GETSTATS dump with IFLA_STATS_LINK_64 only, summing rx/tx bytes
 *   --iterations N  repeat the selected reads N times (default 20)
 *
 * Prints one JSON line: rules, links and counter sums of the last iteration, and the median
 * per-iteration CPU (getrusage(RUSAGE_SELF) user+sys) and wall milliseconds. Read-only: it
 * never sends a *_RESET message nor anything that changes state. Exits 1 naming what failed.
 *
 * "rules" counts rules as `iptables-save` lists them: in legacy tables the entries that are
 * chain policies (underflows), chain heads and the table's end (ERROR targets) and user
 * chains' RETURN footers are not rules, and their counters are not summed.
 *
 * Build: cc -O2 -Wall -o kfloor kfloor.c (libc and Linux uapi headers only).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <endian.h>
#include <linux/if_link.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#define RECV_BUF (128 * 1024)
#define SOCK_RCVBUF (1024 * 1024)

struct totals {
	uint64_t rules, links, packets, bytes, rx_bytes, tx_bytes;
};

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "kfloor: %s: %s\n", what, strerror(errno));
	exit(1);
}

static _Noreturn void fail(const char *what)
{
	fprintf(stderr, "kfloor: %s\n", what);
	exit(1);
}

/* ---- netlink ------------------------------------------------------------------------- */

static char buf[RECV_BUF] __attribute__((aligned(8)));
static uint32_t seq;

static int nl_open(int proto, const char *name)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
	if (fd < 0)
		die(name);
	int size = SOCK_RCVBUF;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)) < 0)
		die("setsockopt SO_RCVBUF");
	return fd;
}

/* Send a dump request (header + body), then hand every reply message to `each` until
 * NLMSG_DONE. */
static void nl_dump(int fd, uint16_t type, const void *body, size_t len, const char *what,
		    void (*each)(const struct nlmsghdr *, struct totals *), struct totals *t)
{
	struct {
		struct nlmsghdr nh;
		char body[1024];
	} req = {0};
	if (len > sizeof(req.body))
		fail("netlink request body too long");
	req.nh.nlmsg_len = NLMSG_LENGTH(len);
	req.nh.nlmsg_type = type;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = ++seq;
	memcpy(req.body, body, len);
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	if (sendto(fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		die(what);
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(what);
		}
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, n);
		     nh = NLMSG_NEXT(nh, n)) {
			if (nh->nlmsg_seq != seq)
				continue;
			if (nh->nlmsg_type == NLMSG_DONE)
				return;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(nh);
				errno = -e->error;
				die(what);
			}
			each(nh, t);
		}
	}
}

/* Attributes of a payload: for (nla = first; ok; nla = next). */
#define NLA_OK_(nla, end) ((char *)(nla) + NLA_HDRLEN <= (end) && (nla)->nla_len >= NLA_HDRLEN && \
			   (char *)(nla) + (nla)->nla_len <= (end))
#define NLA_NEXT_(nla) ((struct nlattr *)((char *)(nla) + NLA_ALIGN((nla)->nla_len)))
#define NLA_TYPE_(nla) ((nla)->nla_type & NLA_TYPE_MASK)
#define NLA_DATA_(nla) ((char *)(nla) + NLA_HDRLEN)
#define NLA_END_(nla) ((char *)(nla) + (nla)->nla_len)
#define for_each_nla(nla, start, end) \
	for (struct nlattr *nla = (struct nlattr *)(start); NLA_OK_(nla, end); nla = NLA_NEXT_(nla))

static uint64_t be64(const struct nlattr *nla)
{
	uint64_t v;
	memcpy(&v, NLA_DATA_(nla), sizeof(v));
	return be64toh(v);
}

/* One NFT_MSG_NEWRULE: find the counter expression among its expressions. */
static void nft_rule(const struct nlmsghdr *nh, struct totals *t)
{
	if (nh->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE))
		return;
	t->rules++;
	char *end = (char *)nh + nh->nlmsg_len;
	for_each_nla(attr, (char *)NLMSG_DATA(nh) + NLMSG_ALIGN(sizeof(struct nfgenmsg)), end) {
		if (NLA_TYPE_(attr) != NFTA_RULE_EXPRESSIONS)
			continue;
		for_each_nla(elem, NLA_DATA_(attr), NLA_END_(attr)) {
			struct nlattr *name = NULL, *data = NULL;
			for_each_nla(e, NLA_DATA_(elem), NLA_END_(elem)) {
				if (NLA_TYPE_(e) == NFTA_EXPR_NAME)
					name = e;
				else if (NLA_TYPE_(e) == NFTA_EXPR_DATA)
					data = e;
			}
			if (!name || !data || strncmp(NLA_DATA_(name), "counter", name->nla_len - NLA_HDRLEN))
				continue;
			for_each_nla(c, NLA_DATA_(data), NLA_END_(data)) {
				if (NLA_TYPE_(c) == NFTA_COUNTER_PACKETS)
					t->packets += be64(c);
				else if (NLA_TYPE_(c) == NFTA_COUNTER_BYTES)
					t->bytes += be64(c);
			}
		}
	}
}

static void read_nft(int fd, struct totals *t)
{
	struct nfgenmsg g = {.nfgen_family = NFPROTO_UNSPEC, .version = NFNETLINK_V0};
	nl_dump(fd, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE, &g, sizeof(g),
		"NFT_MSG_GETRULE dump", nft_rule, t);
}

/* The chains of every table, listed by read_nft_chains for a dump each. */
struct chain_ref {
	uint8_t family;
	char table[NFT_TABLE_MAXNAMELEN], chain[NFT_CHAIN_MAXNAMELEN];
};
static struct chain_ref *chains;
static size_t nchains, chains_cap;

static void copy_name(char *to, size_t size, const struct nlattr *nla)
{
	size_t n = nla->nla_len - NLA_HDRLEN;
	if (n == 0 || n > size)
		fail("nf_tables name attribute of an unexpected length");
	memcpy(to, NLA_DATA_(nla), n);
	to[n - 1] = '\0';
}

/* One NFT_MSG_NEWCHAIN: remember its family, table and name. */
static void nft_chain(const struct nlmsghdr *nh, struct totals *t)
{
	(void)t;
	if (nh->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN))
		return;
	if (nchains == chains_cap) {
		chains_cap = chains_cap ? 2 * chains_cap : 1024;
		chains = realloc(chains, chains_cap * sizeof(*chains));
		if (!chains)
			fail("out of memory");
	}
	const struct nfgenmsg *g = NLMSG_DATA(nh);
	struct chain_ref *c = &chains[nchains];
	c->family = g->nfgen_family;
	c->table[0] = c->chain[0] = '\0';
	char *end = (char *)nh + nh->nlmsg_len;
	for_each_nla(attr, (char *)g + NLMSG_ALIGN(sizeof(*g)), end) {
		if (NLA_TYPE_(attr) == NFTA_CHAIN_TABLE)
			copy_name(c->table, sizeof(c->table), attr);
		else if (NLA_TYPE_(attr) == NFTA_CHAIN_NAME)
			copy_name(c->chain, sizeof(c->chain), attr);
	}
	if (c->table[0] && c->chain[0])
		nchains++;
}

static size_t put_string(char *at, uint16_t type, const char *value)
{
	size_t n = strlen(value) + 1;
	struct nlattr *nla = (struct nlattr *)at;
	nla->nla_len = NLA_HDRLEN + n;
	nla->nla_type = type;
	memcpy(at + NLA_HDRLEN, value, n);
	memset(at + NLA_HDRLEN + n, 0, NLA_ALIGN(nla->nla_len) - nla->nla_len);
	return NLA_ALIGN(nla->nla_len);
}

static void read_nft_chains(int fd, struct totals *t)
{
	struct nfgenmsg g = {.nfgen_family = NFPROTO_UNSPEC, .version = NFNETLINK_V0};
	nchains = 0;
	nl_dump(fd, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN, &g, sizeof(g),
		"NFT_MSG_GETCHAIN dump", nft_chain, t);
	char body[NLMSG_ALIGN(sizeof(g)) + 2 * NLA_ALIGN(NLA_HDRLEN + NFT_CHAIN_MAXNAMELEN)];
	for (size_t i = 0; i < nchains; i++) {
		g.nfgen_family = chains[i].family;
		memcpy(body, &g, sizeof(g));
		size_t len = NLMSG_ALIGN(sizeof(g));
		len += put_string(body + len, NFTA_RULE_TABLE, chains[i].table);
		len += put_string(body + len, NFTA_RULE_CHAIN, chains[i].chain);
		nl_dump(fd, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE, body, len,
			"NFT_MSG_GETRULE dump of a chain", nft_rule, t);
	}
}

/* One RTM_NEWSTATS: the link's 64-bit counters. */
static void link_stats(const struct nlmsghdr *nh, struct totals *t)
{
	if (nh->nlmsg_type != RTM_NEWSTATS)
		return;
	t->links++;
	char *end = (char *)nh + nh->nlmsg_len;
	for_each_nla(attr, (char *)NLMSG_DATA(nh) + NLMSG_ALIGN(sizeof(struct if_stats_msg)), end) {
		if (NLA_TYPE_(attr) != IFLA_STATS_LINK_64 ||
		    attr->nla_len < NLA_HDRLEN + sizeof(struct rtnl_link_stats64))
			continue;
		struct rtnl_link_stats64 s;
		memcpy(&s, NLA_DATA_(attr), sizeof(s));
		t->rx_bytes += s.rx_bytes;
		t->tx_bytes += s.tx_bytes;
	}
}

static void read_links(int fd, struct totals *t)
{
	struct if_stats_msg m = {.family = AF_UNSPEC,
				 .filter_mask = IFLA_STATS_FILTER_BIT(IFLA_STATS_LINK_64)};
	nl_dump(fd, RTM_GETSTATS, &m, sizeof(m), "RTM_GETSTATS dump", link_stats, t);
}

/* ---- legacy x_tables ----------------------------------------------------------------- */

/* The uapi ipt_* and ip6t_* structs differ only in the entry's size and field offsets. */
struct xt_family {
	const char *name, *names_path, *info_opt, *entries_opt;
	int af, level, fd;
	size_t entry_size, counters_at, offsets_at; /* offsets_at: target_offset, next_offset */
};

static struct xt_family xt_families[] = {
	{"IPv4", "/proc/net/ip_tables_names", "IPT_SO_GET_INFO", "IPT_SO_GET_ENTRIES", AF_INET,
	 IPPROTO_IP, -1, sizeof(struct ipt_entry), offsetof(struct ipt_entry, counters),
	 offsetof(struct ipt_entry, target_offset)},
	{"IPv6", "/proc/net/ip6_tables_names", "IP6T_SO_GET_INFO", "IP6T_SO_GET_ENTRIES", AF_INET6,
	 IPPROTO_IPV6, -1, sizeof(struct ip6t_entry), offsetof(struct ip6t_entry, counters),
	 offsetof(struct ip6t_entry, target_offset)},
};
static const char *const xt_tables[] = {"filter", "nat", "mangle", "raw"};

static struct ipt_get_entries *entries;
static size_t entries_cap;

/* Whether the names file lists `table`: only such tables are asked for. */
static int xt_listed(const char *names, const char *table)
{
	size_t n = strlen(table);
	for (const char *p = names; (p = strstr(p, table)); p += n)
		if ((p == names || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return 1;
	return 0;
}

static void xt_table(struct xt_family *f, const char *table, struct totals *t)
{
	char what[96];
	for (int attempt = 0; attempt < 5; attempt++) {
		struct ipt_getinfo info = {0}; /* the same layout as ip6t_getinfo */
		socklen_t len = sizeof(info);
		snprintf(info.name, sizeof(info.name), "%s", table);
		if (getsockopt(f->fd, f->level, IPT_SO_GET_INFO, &info, &len) < 0) {
			if (errno == ENOENT)
				return;
			snprintf(what, sizeof(what), "getsockopt %s on %s table %s", f->info_opt,
				 f->name, table);
			die(what);
		}
		size_t need = sizeof(struct ipt_get_entries) + info.size;
		if (need > entries_cap) {
			entries = realloc(entries, need);
			if (!entries)
				fail("out of memory");
			entries_cap = need;
		}
		memset(entries, 0, sizeof(*entries));
		snprintf(entries->name, sizeof(entries->name), "%s", table);
		entries->size = info.size;
		len = need;
		if (getsockopt(f->fd, f->level, IPT_SO_GET_ENTRIES, entries, &len) < 0) {
			if (errno == EAGAIN) /* changed between the two calls: ask again */
				continue;
			if (errno == ENOENT)
				return;
			snprintf(what, sizeof(what), "getsockopt %s on %s table %s",
				 f->entries_opt, f->name, table);
			die(what);
		}
		/* Walk the entries; an entry is a rule unless it is a policy (underflow), an
		 * ERROR target (chain head, table end), or the footer just before an ERROR. */
		const char *blob = (const char *)entries->entrytable;
		uint64_t prev_pk = 0, prev_by = 0;
		int prev_rule = 0;
		for (size_t off = 0; off < info.size;) {
			uint16_t target_offset, next_offset;
			memcpy(&target_offset, blob + off + f->offsets_at, 2);
			memcpy(&next_offset, blob + off + f->offsets_at + 2, 2);
			if (next_offset < f->entry_size || off + next_offset > info.size ||
			    target_offset + sizeof(struct xt_entry_target) > next_offset)
				fail("malformed x_tables entry");
			const struct xt_entry_target *tg = (const void *)(blob + off + target_offset);
			const struct xt_counters *c = (const void *)(blob + off + f->counters_at);
			int is_error = !strcmp(tg->u.user.name, XT_ERROR_TARGET);
			int is_policy = 0;
			for (int h = 0; h < NF_INET_NUMHOOKS; h++)
				if ((info.valid_hooks & (1u << h)) && info.underflow[h] == off)
					is_policy = 1;
			if (prev_rule && !is_error) { /* the previous entry was a rule after all */
				t->rules++;
				t->packets += prev_pk;
				t->bytes += prev_by;
			}
			prev_rule = !is_error && !is_policy;
			prev_pk = c->pcnt;
			prev_by = c->bcnt;
			off += next_offset;
		}
		return;
	}
	snprintf(what, sizeof(what), "%s table %s kept changing while being read", f->name, table);
	fail(what);
}

static void read_legacy(struct totals *t)
{
	for (size_t i = 0; i < sizeof(xt_families) / sizeof(xt_families[0]); i++) {
		struct xt_family *f = &xt_families[i];
		char names[4096];
		FILE *fp = fopen(f->names_path, "re");
		if (!fp) {
			if (errno == ENOENT) /* x_tables of this family not loaded: no tables */
				continue;
			die(f->names_path);
		}
		size_t n = fread(names, 1, sizeof(names) - 1, fp);
		fclose(fp);
		names[n] = '\0';
		for (size_t j = 0; j < sizeof(xt_tables) / sizeof(xt_tables[0]); j++) {
			if (!xt_listed(names, xt_tables[j]))
				continue;
			if (f->fd < 0 && (f->fd = socket(f->af, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW)) < 0)
				die(f->af == AF_INET ? "socket AF_INET SOCK_RAW" : "socket AF_INET6 SOCK_RAW");
			xt_table(f, xt_tables[j], t);
		}
	}
}

/* ---- main ---------------------------------------------------------------------------- */

static double ms(struct timeval tv)
{
	return tv.tv_sec * 1e3 + tv.tv_usec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static _Noreturn void usage(void)
{
	fail("usage: kfloor [--rules nft|nft-chains|legacy] [--links] [--iterations N] [--interval MS] (at least one read)");
}

int main(int argc, char **argv)
{
	const char *rules = NULL;
	int links = 0, iterations = 20, interval_ms = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rules") && i + 1 < argc)
			rules = argv[++i];
		else if (!strcmp(argv[i], "--links"))
			links = 1;
		else if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
			iterations = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--interval") && i + 1 < argc)
			interval_ms = atoi(argv[++i]);
		else
			usage();
	}
	int chainwise = rules && !strcmp(rules, "nft-chains");
	if ((rules && strcmp(rules, "nft") && !chainwise && strcmp(rules, "legacy")) ||
	    (!rules && !links) ||
	    iterations < 1 || interval_ms < 0)
		usage();
	int nft_fd = rules && (!strcmp(rules, "nft") || chainwise) ? nl_open(NETLINK_NETFILTER, "socket NETLINK_NETFILTER") : -1;
	int rt_fd = links ? nl_open(NETLINK_ROUTE, "socket NETLINK_ROUTE") : -1;
	double *cpu = calloc(iterations, sizeof(double)), *user = calloc(iterations, sizeof(double));
	double *sys = calloc(iterations, sizeof(double)), *wall = calloc(iterations, sizeof(double));
	if (!cpu || !user || !sys || !wall)
		fail("out of memory");
	struct totals t = {0};
	for (int i = 0; i < iterations; i++) {
		struct rusage r0, r1;
		struct timespec w0, w1;
		if (interval_ms > 0) {
			struct timespec pause = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
			nanosleep(&pause, NULL);
		}
		memset(&t, 0, sizeof(t));
		getrusage(RUSAGE_SELF, &r0);
		clock_gettime(CLOCK_MONOTONIC, &w0);
		if (nft_fd >= 0 && chainwise)
			read_nft_chains(nft_fd, &t);
		else if (nft_fd >= 0)
			read_nft(nft_fd, &t);
		else if (rules)
			read_legacy(&t);
		if (rt_fd >= 0)
			read_links(rt_fd, &t);
		clock_gettime(CLOCK_MONOTONIC, &w1);
		getrusage(RUSAGE_SELF, &r1);
		user[i] = ms(r1.ru_utime) - ms(r0.ru_utime);
		sys[i] = ms(r1.ru_stime) - ms(r0.ru_stime);
		cpu[i] = user[i] + sys[i];
		wall[i] = (w1.tv_sec - w0.tv_sec) * 1e3 + (w1.tv_nsec - w0.tv_nsec) / 1e6;
	}
	printf("{\"iterations\":%d,\"rules\":%llu,\"links\":%llu,\"packets\":%llu,\"bytes\":%llu,"
	       "\"rx_bytes\":%llu,\"tx_bytes\":%llu,\"cpu_ms\":%.3f,\"user_ms\":%.3f,"
	       "\"sys_ms\":%.3f,\"wall_ms\":%.3f}\n",
	       iterations, (unsigned long long)t.rules, (unsigned long long)t.links,
	       (unsigned long long)t.packets, (unsigned long long)t.bytes,
	       (unsigned long long)t.rx_bytes, (unsigned long long)t.tx_bytes,
	       median(cpu, iterations), median(user, iterations), median(sys, iterations),
	       median(wall, iterations));
	return 0;
}
