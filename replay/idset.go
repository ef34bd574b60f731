package replay

import "hash/maphash"

// idSet holds event ids as two 64-bit hashes with independent random seeds: 16 bytes an id
// whatever its length, where a string set would cost several times that for a million ids. A
// false "present" needs both hashes of two ids to collide, which for a few million ids is
// less likely than a hardware fault. It is not safe for concurrent use.
type idSet struct {
	seeds [2]maphash.Seed
	m     map[[2]uint64]struct{}
}

func newIDSet() *idSet {
	return &idSet{
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		m:     make(map[[2]uint64]struct{}),
	}
}

func (s *idSet) key(id string) [2]uint64 {
	return [2]uint64{maphash.String(s.seeds[0], id), maphash.String(s.seeds[1], id)}
}

// add stores id and reports whether it was new.
func (s *idSet) add(id string) bool {
	k := s.key(id)
	if _, ok := s.m[k]; ok {
		return false
	}
	s.m[k] = struct{}{}
	return true
}

func (s *idSet) len() int { return len(s.m) }
