package nft

import (
	"strings"
	"testing"

	"github.com/google/nftables"

	"curfew/pkg/lab"
)

// Try loads a table that uses every part into a scratch namespace, and
// says when the kernel refuses one (a chain name longer than the kernel's
// 256 bytes); the namespace it runs in never sees the table.
func TestTryLoadsTheTableIntoAScratchNamespace(t *testing.T) {
	lab.Require(t)
	if err := Try(everything()); err != nil {
		t.Errorf("every part: %v", err)
	}
	bad := everything()
	long := strings.Repeat("x", 300) // chain names hold at most 256 bytes
	bad.Profiles[0].ID, bad.Devices[0].Profile, bad.Unknown.Profile = long, long, long
	if err := Try(bad); err == nil {
		t.Error("a table with a 308-byte chain name was taken")
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == TableName {
			t.Errorf("Try left table inet %s in the namespace it was called from", TableName)
		}
	}
}
