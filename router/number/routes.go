package number

import (
	"fmt"
	"strings"

	"github.com/smppd/smppd/router"
)

// Rule routes the messages it matches to a pool. Empty match fields match anything.
type Rule struct {
	Operator string // operator name as the table has it ("T-Mobile"); "": any
	Country  string // ISO 3166 region of the destination ("DE"); "": any
	Account  string // the client's system_id; "": any
	Pool     string // upstream pool name
}

// Routes picks a pool for a message: the first rule, in configured order, that matches it,
// else the fallback. Immutable; Route allocates nothing.
type Routes struct {
	rules []route
	// byOp lists, per operator named by some rule, the indexes of the rules that can match it
	// (its own and the operator-less ones), ascending; anyOp those for other operators.
	byOp     map[string][]int32
	anyOp    []int32
	fallback *router.Pool
}

type route struct {
	Rule
	pool *router.Pool
}

// NewRoutes resolves rules and fallback (a pool name, "" none) against pools.
func NewRoutes(rules []Rule, fallback string, pools map[string]*router.Pool) (*Routes, error) {
	r := &Routes{byOp: map[string][]int32{}}
	for i, rl := range rules {
		p := pools[rl.Pool]
		if p == nil {
			return nil, fmt.Errorf("routes[%d]: pool %q: no such upstream", i, rl.Pool)
		}
		if rl.Country != "" && !Region(rl.Country) {
			return nil, fmt.Errorf("routes[%d]: country %q: not an ISO 3166 region code with a numbering plan", i, rl.Country)
		}
		rl.Country = strings.ToUpper(rl.Country)
		r.rules = append(r.rules, route{rl, p})
		if rl.Operator == "" {
			r.anyOp = append(r.anyOp, int32(i))
			for op := range r.byOp {
				r.byOp[op] = append(r.byOp[op], int32(i))
			}
		} else if _, ok := r.byOp[rl.Operator]; !ok {
			r.byOp[rl.Operator] = append(append([]int32(nil), r.anyOp...), int32(i))
		} else {
			r.byOp[rl.Operator] = append(r.byOp[rl.Operator], int32(i))
		}
	}
	if fallback != "" {
		if r.fallback = pools[fallback]; r.fallback == nil {
			return nil, fmt.Errorf("fallback: pool %q: no such upstream", fallback)
		}
	}
	return r, nil
}

// Route returns the pool for a message to operator and country from account (system_id) and the
// index of the rule that chose it; -1 means the fallback (nil: none).
func (r *Routes) Route(operator, country, account string) (*router.Pool, int) {
	cand := r.anyOp
	if c, ok := r.byOp[operator]; ok {
		cand = c
	}
	for _, i := range cand {
		rl := &r.rules[i]
		if (rl.Country == "" || rl.Country == country) && (rl.Account == "" || rl.Account == account) {
			return rl.pool, int(i)
		}
	}
	return r.fallback, -1
}

// Empty reports whether there are neither rules nor a fallback.
func (r *Routes) Empty() bool { return len(r.rules) == 0 && r.fallback == nil }
