package dedup

import (
	"math/bits"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/smppd/smppd/smpp"
)

const (
	nearShards = 8  // an account's texts all live in one shard (by its tag)
	ways       = 4  // cluster references per index bucket
	maxBands   = 8  // MaxDistance+1 bands: up to distance 7
	clockScan  = 16 // the clock hand clears at most this many reference bits per insertion
)

// cluster is a group of near-duplicate texts of one account: the fingerprint of the first, and
// how many passed in the current and previous window.
type cluster struct {
	fp    uint64
	tag   uint64 // account (and destination) hash; 0: free
	start int64  // unix nanos, start of the current window
	cur   uint32 // messages passed in the current window
	prev  uint32 // messages passed in the previous window
	ref   bool   // matched since the clock hand last passed
}

// ref points a band-index slot at a cluster; band and tag are a cheap pre-check before the
// cluster itself is read. A ref whose cluster was reused is stale; lookups verify the cluster.
type ref struct {
	idx  uint32 // cluster index + 1; 0: empty
	band uint16 // low 16 bits of the band value
	tag  uint16 // low 16 bits of the cluster's tag
}

type nearShard struct {
	mu       sync.Mutex
	clusters []cluster // guarded by mu
	index    []ref     // guarded by mu: [band][bucket][way]
	hand     int       // guarded by mu: clock hand over clusters
	used     int       // guarded by mu: clusters not free
	_        [64]byte
}

// Near limits near-duplicate floods: per account (or account and destination), at most Max
// messages whose fingerprints are within MaxDistance of the first one's per sliding Window.
// Safe for concurrent use; Allow allocates nothing.
//
// Clusters are found by the pigeonhole principle: the 64 bits are cut into MaxDistance+1 bands,
// and two fingerprints within MaxDistance agree on at least one band exactly. Each band has a
// hash index from (tag, band value) to clusters. Memory is fixed at New: MaxClusters clusters
// (40 bytes) and 2·MaxClusters references (8 bytes) per band, in nearShards shards by tag. When a
// shard is full, a clock hand evicts a cluster not matched since it last passed.
type Near struct {
	max     float64
	window  int64
	dist    int
	nbands  int
	lo      [maxBands]uint8
	mask    [maxBands]uint64
	buckets int // per band per shard, power of two
	perDest bool
	status  smpp.Status
	now     func() int64

	shards [nearShards]nearShard
}

// NewNear returns a limiter configured by cfg (cfg.Enabled is not looked at). now (nil:
// smpp.Now) returns unix nanos; set (nil: a private set) receives its gauges.
func NewNear(cfg NearConfig, now func() int64, set *metrics.Set) (*Near, error) {
	cfg.Enabled = true
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = smpp.Now
	}
	if set == nil {
		set = metrics.NewSet()
	}
	n := &Near{max: float64(cfg.Max), window: int64(cfg.Window), dist: cfg.MaxDistance,
		nbands: cfg.MaxDistance + 1, perDest: cfg.PerDestination, status: cfg.Status, now: now}
	for i := 0; i < n.nbands; i++ {
		lo, hi := i*64/n.nbands, (i+1)*64/n.nbands
		n.lo[i] = uint8(lo)
		n.mask[i] = 1<<(hi-lo) - 1
		if hi-lo == 64 {
			n.mask[i] = ^uint64(0)
		}
	}
	per := cfg.MaxClusters / nearShards
	n.buckets = 1 << bits.Len(uint(2*per/ways-1)) // 2 references per cluster and band
	for i := range n.shards {
		s := &n.shards[i]
		s.clusters = make([]cluster, per)
		s.index = make([]ref, n.nbands*n.buckets*ways)
	}
	set.GetOrCreateGauge(`smppd_dedup_near_clusters`, func() float64 { return float64(n.Len()) })
	capacity := float64(per * nearShards)
	set.GetOrCreateGauge(`smppd_dedup_near_clusters_capacity`, func() float64 { return capacity })
	return n, nil
}

// Status is the status to answer a message Allow refused.
func (n *Near) Status() smpp.Status { return n.status }

// PerDestination reports whether counts are kept per destination (see NearConfig).
func (n *Near) PerDestination() bool { return n.perDest }

func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func (n *Near) band(fp uint64, i int) uint64 { return fp >> n.lo[i] & n.mask[i] }

// slot returns the first of the ways of band i's bucket for (tag, v).
func (n *Near) slot(tag uint64, i int, v uint64) int {
	h := mix64(tag ^ mix64(v^uint64(i)<<56))
	return (i*n.buckets + int(h&uint64(n.buckets-1))) * ways
}

// Allow counts a message with fingerprint fp from tag (see Tag) and reports whether it is
// within the limit. A refused message is not counted.
func (n *Near) Allow(tag, fp uint64) bool {
	if tag == 0 {
		tag = 1 // 0 marks a free cluster
	}
	now := n.now()
	s := &n.shards[mix64(tag)%nearShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	c := n.find(s, tag, fp)
	if c == nil {
		c = n.insert(s, tag, fp, now)
	} else {
		c.ref = true // matched again: survives the clock hand's next pass
	}
	c.roll(now, n.window)
	if n.estimate(c, now) >= n.max {
		return false
	}
	c.cur++
	return true
}

// Peek reports whether Allow would allow, without counting or recording anything: for dry runs.
func (n *Near) Peek(tag, fp uint64) bool {
	if tag == 0 {
		tag = 1
	}
	now := n.now()
	s := &n.shards[mix64(tag)%nearShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	c := n.find(s, tag, fp)
	if c == nil {
		return true
	}
	cc := *c
	cc.roll(now, n.window)
	return n.estimate(&cc, now) < n.max
}

// roll moves c's windows on to the one holding now.
func (c *cluster) roll(now, window int64) {
	if el := now - c.start; el >= window || el < 0 {
		if el >= 2*window || el < 0 {
			c.prev, c.start = 0, now
		} else {
			c.prev, c.start = c.cur, c.start+window
		}
		c.cur = 0
	}
}

// estimate is the sliding-window count: the previous window's weighted by its overlap.
func (n *Near) estimate(c *cluster, now int64) float64 {
	return float64(c.prev)*float64(n.window-(now-c.start))/float64(n.window) + float64(c.cur)
}

// find returns the cluster of tag within n.dist of fp, or nil. s.mu must be held.
func (n *Near) find(s *nearShard, tag, fp uint64) *cluster {
	for i := 0; i < n.nbands; i++ {
		v := n.band(fp, i)
		base := n.slot(tag, i, v)
		for _, r := range s.index[base : base+ways] {
			if r.idx == 0 || r.band != uint16(v) || r.tag != uint16(tag) {
				continue
			}
			c := &s.clusters[r.idx-1]
			if c.tag == tag && bits.OnesCount64(c.fp^fp) <= n.dist {
				return c
			}
		}
	}
	return nil
}

// insert makes a new cluster for (tag, fp), evicting one if the shard is full. s.mu must be held.
func (n *Near) insert(s *nearShard, tag, fp uint64, now int64) *cluster {
	var idx int
	for i := 0; ; i++ {
		idx = s.hand
		s.hand = (s.hand + 1) % len(s.clusters)
		c := &s.clusters[idx]
		if c.tag == 0 || now-c.start >= 2*n.window || !c.ref || i == clockScan {
			break
		}
		c.ref = false
	}
	c := &s.clusters[idx]
	if c.tag == 0 {
		s.used++
	}
	*c = cluster{fp: fp, tag: tag, start: now}
	for i := 0; i < n.nbands; i++ {
		v := n.band(fp, i)
		base := n.slot(tag, i, v)
		// A free or stale slot, else the one whose cluster passed the fewest messages: busy
		// clusters (the floods) stay findable.
		way, least := 0, uint64(1<<64-1)
		for w := 0; w < ways; w++ {
			r := s.index[base+w]
			if r.idx == 0 || !n.live(s, r, i) {
				way = w
				break
			}
			if c := &s.clusters[r.idx-1]; uint64(c.cur)+uint64(c.prev) < least {
				way, least = w, uint64(c.cur)+uint64(c.prev)
			}
		}
		s.index[base+way] = ref{idx: uint32(idx + 1), band: uint16(v), tag: uint16(tag)}
	}
	return c
}

// live reports whether r still describes its cluster in band i.
func (n *Near) live(s *nearShard, r ref, i int) bool {
	c := &s.clusters[r.idx-1]
	return c.tag != 0 && uint16(c.tag) == r.tag && uint16(n.band(c.fp, i)) == r.band
}

// Len returns the number of clusters in use.
func (n *Near) Len() int {
	t := 0
	for i := range n.shards {
		s := &n.shards[i]
		s.mu.Lock()
		t += s.used
		s.mu.Unlock()
	}
	return t
}
