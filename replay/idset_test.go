package replay

import (
	"fmt"
	"testing"
)

func TestIDSet(t *testing.T) {
	s := newIDSet()
	const n = 100_000 // many growths
	for i := range n {
		s.add(s.key(fmt.Sprint("id-", i)))
		if i%2 == 0 {
			s.add(s.key(fmt.Sprint("id-", i))) // again: no second entry
		}
	}
	if s.len() != n {
		t.Fatalf("len %d, want %d", s.len(), n)
	}
	for i := range n {
		if !s.has(s.keyBytes(fmt.Append(nil, "id-", i))) {
			t.Fatalf("id-%d missing (looked up by bytes)", i)
		}
		if s.has(s.key(fmt.Sprint("other-", i))) {
			t.Fatalf("other-%d present", i)
		}
	}
	if nonZero(idKey{}) == (idKey{}) {
		t.Fatal("the zero key is the free-slot marker and must never be stored")
	}
}
