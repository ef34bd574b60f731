package replay

import "hash/maphash"

// idSet holds event ids as two 64-bit hashes with independent random seeds: 16 bytes an id
// whatever its length. A false "present" needs both hashes of two ids to collide, which for a
// few million ids is less likely than a hardware fault. The keys are already uniform hashes,
// so the set is a plain open-addressing table on them (linear probing, at most 3/4 full):
// about 32 MB for a million ids, half what a Go map of the same keys takes. It is not safe
// for concurrent use.
type idSet struct {
	seeds [2]maphash.Seed
	slots []idKey // len is a power of two; the zero key marks a free slot
	n     int
}

// idKey is an id as the set stores it; never zero.
type idKey [2]uint64

func newIDSet() *idSet {
	return &idSet{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, slots: make([]idKey, 1024)}
}

func (s *idSet) key(id string) idKey {
	return nonZero(idKey{maphash.String(s.seeds[0], id), maphash.String(s.seeds[1], id)})
}

// keyBytes is key for an id still in the payload's bytes; maphash gives both the same hash.
func (s *idSet) keyBytes(id []byte) idKey {
	return nonZero(idKey{maphash.Bytes(s.seeds[0], id), maphash.Bytes(s.seeds[1], id)})
}

func nonZero(k idKey) idKey {
	if k == (idKey{}) {
		k[1] = 1
	}
	return k
}

// find returns the slot holding k, or the free slot where it belongs.
func (s *idSet) find(k idKey) (int, bool) {
	mask := len(s.slots) - 1
	for i := int(k[0]) & mask; ; i = (i + 1) & mask {
		switch s.slots[i] {
		case k:
			return i, true
		case idKey{}:
			return i, false
		}
	}
}

func (s *idSet) has(k idKey) bool {
	_, ok := s.find(k)
	return ok
}

func (s *idSet) add(k idKey) {
	if 4*(s.n+1) > 3*len(s.slots) {
		old := s.slots
		s.slots = make([]idKey, 2*len(old))
		for _, o := range old {
			if o != (idKey{}) {
				i, _ := s.find(o)
				s.slots[i] = o
			}
		}
	}
	if i, ok := s.find(k); !ok {
		s.slots[i] = k
		s.n++
	}
}

func (s *idSet) len() int { return s.n }
