// Package dnsfilter is curfew's DNS filter: per-profile blocking of
// domains, services and lists, safe search, allowlist mode and bypass
// prevention, in front of the router's own resolver (dnsmasq).
//
// Managed devices' DNS is redirected by the kernel to a port of this filter
// chosen by the device's profile, so a query's profile is known from the
// port it arrived on, never guessed.
package dnsfilter

import (
	"hash/fnv"
	"slices"
	"sort"
	"strings"
)

// Set is a compact set of domain names: the sorted 64-bit FNV-1a hashes of
// the names, with the index of the source (a list, a service) each came
// from. A million names take 10 MB (8 bytes of hash and 2 of source each)
// where a Go map of strings would take about eight times that; a lookup is a
// binary search per label of the query. Two different names share a hash
// with a probability of about n/2^64 per lookup: for a million names, once
// in 10^13 queries — a false block that small is accepted for the memory.
type Set struct {
	hashes []uint64
	src    []uint16
}

// Builder collects names for a Set.
type Builder struct {
	pairs []pair
}

type pair struct {
	h   uint64
	src uint16
}

func hash(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// Add adds a normalised name (lower case, no trailing dot).
func (b *Builder) Add(name string, src uint16) {
	b.pairs = append(b.pairs, pair{hash(name), src})
}

// Len is the number of names added so far.
func (b *Builder) Len() int { return len(b.pairs) }

// Build returns the set; the builder may be discarded.
func (b *Builder) Build() *Set {
	sort.Slice(b.pairs, func(i, j int) bool { return b.pairs[i].h < b.pairs[j].h })
	s := &Set{hashes: make([]uint64, 0, len(b.pairs)), src: make([]uint16, 0, len(b.pairs))}
	for i, p := range b.pairs {
		if i > 0 && p.h == b.pairs[i-1].h {
			continue // first source wins
		}
		s.hashes = append(s.hashes, p.h)
		s.src = append(s.src, p.src)
	}
	b.pairs = nil
	return s
}

// Len is the number of distinct names in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.hashes)
}

// Match reports whether name or one of its parent domains is in the set:
// a blocked domain blocks its subdomains. It returns the matching suffix
// and its source.
func (s *Set) Match(name string) (suffix string, src uint16, ok bool) {
	if s.Len() == 0 {
		return "", 0, false
	}
	for rest := name; rest != ""; {
		if i, found := slices.BinarySearch(s.hashes, hash(rest)); found {
			return rest, s.src[i], true
		}
		dot := strings.IndexByte(rest, '.')
		if dot < 0 {
			break
		}
		rest = rest[dot+1:]
	}
	return "", 0, false
}
