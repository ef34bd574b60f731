package replay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Ayrshare's limits on one profile's requests.
const (
	// DefaultRateLimit requests at most in any DefaultRatePeriod.
	DefaultRateLimit  = 300
	DefaultRatePeriod = 5 * time.Minute
	// Default429Guard is how many 429 answers in 24 hours make the client stop asking for a
	// profile: Ayrshare suspends a profile at 1,000, so the guard stays well clear of that.
	Default429Guard = 500
)

// ErrRateBudget means the client stopped asking for a profile's history for now: it got so many
// 429 answers in the last 24 hours that more would risk Ayrshare suspending the profile.
var ErrRateBudget = errors.New("too many 429 answers in 24h: the profile's history is not requested for now")

// limits keeps each profile's requests within Ayrshare's rate limits. It is safe for concurrent use.
type limits struct {
	n      int
	per    time.Duration
	guard  int
	now    func() time.Time
	mu     sync.Mutex
	byProf map[string]*profileLimits // by profile key
}

// profileLimits is one profile's state: a token bucket, and its 429s by hour of the last day.
type profileLimits struct {
	bucket *rate.Limiter
	hours  [24]struct {
		hour int64 // hours since the epoch this slot counts; older counts are stale
		n    int
	}
}

func newLimits(n int, per time.Duration, guard int) *limits {
	return &limits{n: n, per: per, guard: guard, now: time.Now, byProf: map[string]*profileLimits{}}
}

func (l *limits) profile(key string) *profileLimits {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.byProf[key]
	if p == nil {
		// A bucket of b tokens refilled at (n-b)/per never grants more than b + (n-b) = n in
		// any span of per: a strict bound, unlike a bucket refilled at n/per.
		b := max(1, min(10, l.n/10))
		p = &profileLimits{bucket: rate.NewLimiter(rate.Limit(float64(l.n-b)/l.per.Seconds()), b)}
		if l.n <= b {
			p.bucket = rate.NewLimiter(rate.Every(l.per), l.n)
		}
		l.byProf[key] = p
	}
	return p
}

// wait blocks until a request for the profile with key is allowed, or returns ErrRateBudget
// when the profile's 429s of the last day reached the guard.
func (l *limits) wait(ctx context.Context, key string) error {
	p := l.profile(key)
	if n := l.recent429(p); n >= l.guard {
		return fmt.Errorf("%w (%d of Ayrshare's 1,000 before a suspension)", ErrRateBudget, n)
	}
	return p.bucket.Wait(ctx)
}

// saw429 counts a 429 answer for the profile with key.
func (l *limits) saw429(key string) {
	p := l.profile(key)
	hour := l.now().Unix() / 3600
	l.mu.Lock()
	defer l.mu.Unlock()
	s := &p.hours[hour%24]
	if s.hour != hour {
		s.hour, s.n = hour, 0
	}
	s.n++
}

func (l *limits) recent429(p *profileLimits) int {
	hour := l.now().Unix() / 3600
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range p.hours {
		if hour-s.hour < 24 {
			n += s.n
		}
	}
	return n
}
