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

// Builder collects names for a Set. Hashes and sources are kept in two
// parallel slices and sorted in place, so a million names peak at about
// 20 MB while loading instead of a copy of everything.
type Builder struct {
	hashes []uint64
	src    []uint16
}

func hash(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// Add adds a normalised name (lower case, no trailing dot).
func (b *Builder) Add(name string, src uint16) {
	b.hashes = append(b.hashes, hash(name))
	b.src = append(b.src, src)
}

// Len is the number of names added so far.
func (b *Builder) Len() int { return len(b.hashes) }

func (b *Builder) Less(i, j int) bool { return b.hashes[i] < b.hashes[j] }
func (b *Builder) Swap(i, j int) {
	b.hashes[i], b.hashes[j] = b.hashes[j], b.hashes[i]
	b.src[i], b.src[j] = b.src[j], b.src[i]
}

// Build returns the set; the builder must not be used afterwards.
func (b *Builder) Build() *Set {
	sort.Stable(b) // stable: the first source of a duplicate wins
	n := 0
	for i := range b.hashes {
		if i > 0 && b.hashes[i] == b.hashes[n-1] {
			continue
		}
		b.hashes[n], b.src[n] = b.hashes[i], b.src[i]
		n++
	}
	s := &Set{hashes: slices.Clip(b.hashes[:n]), src: slices.Clip(b.src[:n])}
	b.hashes, b.src = nil, nil
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
