package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"curfew/pkg/control"
	"curfew/pkg/plan"
)

// stateFile holds the parents' overrides. It lives in the state dir
// (/etc/curfew on a router: flash, so that a pause survives a reboot) and is
// written only when a parent acts — never on a timer, never when an override
// merely expires — to spare the flash.
const stateFile = "overrides.json"

type stateDoc struct {
	Version   int             `json:"version"`
	Overrides []plan.Override `json:"overrides"`
	// Requests are the children's requests for more time, open and
	// answered (the audit trail), and NextRequest the next one's id.
	Requests    []control.TimeRequest `json:"requests,omitempty"`
	NextRequest int                   `json:"next_request,omitempty"`
}

// previousFile is the copy before the last write: a hard link kept by
// saveOverrides, which costs no flash write.
const previousFile = stateFile + ".prev"

// loadOverrides reads the state file; a missing file is no overrides. A
// file that cannot be read is not simply dropped — that would lift every
// pause a parent gave: it is moved aside (overrides.json.corrupt, for the
// parent to look at), the copy before the last write is used instead, and
// the problem is returned as a notice for status and LuCI (err) while the
// overrides that could be saved come back.
func loadState(dir string) (stateDoc, error) {
	path := filepath.Join(dir, stateFile)
	doc, err := readState(path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return doc, nil
	}
	bad := path + ".corrupt"
	os.Rename(path, bad) //nolint:errcheck // the notice below names the file either way
	prev, perr := readState(filepath.Join(dir, previousFile))
	if perr != nil {
		return stateDoc{}, fmt.Errorf("%s could not be read (%v; kept as %s); no earlier copy: parents' pauses and allows were lost", path, err, bad)
	}
	return prev, fmt.Errorf("%s could not be read (%v; kept as %s); restored the copy before the last change, which may lack the latest pause or allow", path, err, bad)
}

func readState(path string) (stateDoc, error) {
	var doc stateDoc
	data, err := os.ReadFile(path)
	if err != nil {
		return doc, err
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return stateDoc{}, err
	}
	for _, o := range doc.Overrides {
		if o.Kind != plan.Pause && o.Kind != plan.Allow && o.Kind != plan.Grant {
			return stateDoc{}, fmt.Errorf("unknown override kind %q", o.Kind)
		}
	}
	return doc, nil
}

// saveState writes the overrides file, keeping the previous one as
// overrides.json.prev.
func saveState(dir string, doc stateDoc) error {
	doc.Version = 1
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	prev := filepath.Join(dir, previousFile)
	os.Remove(prev)                              //nolint:errcheck // may not exist
	os.Link(filepath.Join(dir, stateFile), prev) //nolint:errcheck // nothing to keep on the first write
	return atomicWrite(dir, stateFile, append(data, '\n'))
}

// atomicWrite writes a file in dir atomically: a temporary file in the same
// directory, fsync, rename over the old one, fsync the directory. A power
// cut leaves either the old or the new file, never half of one.
func atomicWrite(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
