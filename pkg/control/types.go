package control

import (
	"time"

	"curfew/pkg/plan"
)

// Status is the result of `status`.
type Status struct {
	Version      string `json:"version"`
	Backend      string `json:"backend"`
	ClockTrusted bool   `json:"clock_trusted"`
	Zone         string `json:"zone"`
	// Zonename and Timezone are the system config's values the daemon
	// keeps time by (tz.Resolve them for the same zone).
	Zonename string       `json:"zonename,omitempty"`
	Timezone string       `json:"timezone,omitempty"`
	Config   ConfigStatus `json:"config"`
	// Plan is what is enforced now; nil before the first good config.
	Plan      *plan.Plan      `json:"plan"`
	Overrides []plan.Override `json:"overrides"`
	// StateError says that the saved overrides could not be read at
	// start-up and what was restored instead; empty when all is well.
	StateError string `json:"state_error,omitempty"`
	// Notes are remarks for the parent, such as an unknown MAC that uses a
	// configured device's DHCP name.
	Notes []string `json:"notes"`
	// Enforcement says whether the kernel holds the rules of the plan.
	Enforcement Enforcement `json:"enforcement"`
}

// Failing is true when nothing is enforced because the kernel refused
// the rules: `curfew status` exits 1.
func (s Status) Failing() bool { return s.Enforcement.Error != "" }

// Enforcement says whether the kernel took curfew's rules. When it refused
// them (an old kernel, a missing module), nothing is enforced at all: the
// plan above is only what would be. status exits 1, LuCI shows a banner,
// the parents get one enforcement_failed notification.
type Enforcement struct {
	OK bool `json:"ok"`
	// Error is the kernel's answer to the last try; Since is when the
	// rules were first refused, NextTry when the daemon tries again.
	Error   string    `json:"error,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	NextTry time.Time `json:"next_try,omitzero"`
}

// ConfigStatus tells whether the last config load worked.
type ConfigStatus struct {
	File     string    `json:"file"`
	OK       bool      `json:"ok"`
	Errors   []string  `json:"errors"`
	LoadedAt time.Time `json:"loaded_at"`
}

// Device is one row of `devices`: seen on the network, configured, or both.
type Device struct {
	MAC        string   `json:"mac"`
	Name       string   `json:"name"`
	Profile    string   `json:"profile"`
	Configured bool     `json:"configured"`
	Addresses  []string `json:"addresses"`
	Hostname   string   `json:"hostname"`
	ClientID   string   `json:"client_id"`
	// WifiKey is the profile whose Wi-Fi key the device joined with
	// (the profile's id, never the key).
	WifiKey string `json:"wifi_key,omitempty"`
	// Note says when an unknown MAC looks like a configured device.
	Note      string     `json:"note,omitempty"`
	FirstSeen *time.Time `json:"first_seen"`
	LastSeen  *time.Time `json:"last_seen"`
	State     string     `json:"state"`
}

// Explanation is the result of `explain`.
type Explanation struct {
	Target  string      `json:"target"`
	Devices []Explained `json:"devices"`
}

// ListedBlocked is how many blocked destinations an answer lists (status,
// explain); the count says how many there are. Answers reach LuCI as one
// ubus message of at most 1 MB, and a profile may block 100,000 prefixes.
const ListedBlocked = 50

// Explained is why one device is in its state and what changes next.
type Explained struct {
	MAC     string     `json:"mac"`
	Name    string     `json:"name"`
	Profile string     `json:"profile"`
	State   string     `json:"state"`
	Reason  string     `json:"reason"`
	Until   *time.Time `json:"until"`
	// AlsoApplies lists further causes in force now.
	AlsoApplies []string `json:"also_applies"`
	BudgetLeft  string   `json:"budget_left,omitempty"`
	// Services are the profile's service allowances today, as sentences:
	// "YouTube: 1h used of 1h today".
	Services []string `json:"services,omitempty"`
	// Blocked lists what the device may not reach, at most ListedBlocked
	// entries of BlockedCount.
	Blocked      []string `json:"blocked"`
	BlockedCount int      `json:"blocked_count"`
	// DNSBlocked lists recent DNS decisions against the device, newest
	// last: "tiktok.com blocked by service tiktok".
	DNSBlocked []string `json:"dns_blocked"`
	// DNS counts the device's queries since the daemon started.
	DNS DNSCounters `json:"dns"`
	// Text is the whole explanation in one sentence, for people.
	Text string `json:"text"`
	// Requests are the device's requests for more time today, newest
	// last, as sentences: "asked 30 min at 21:07 (open)".
	Requests []string `json:"requests"`
	// FlowsDropped counts the device's new connections the kernel dropped
	// today for flow_limit (counted once a minute).
	FlowsDropped uint64 `json:"flows_dropped"`
	// FlowLimit is that limit, new connections a second; 0 is none.
	FlowLimit int `json:"flow_limit"`
}

// ActionResult answers pause, resume, allow, grant, reload and
// clock_synced.
type ActionResult struct {
	Message   string          `json:"message"`
	Overrides []plan.Override `json:"overrides,omitempty"`
}

// DNSCounters are a device's DNS counts since the daemon started.
type DNSCounters struct {
	Queries        int `json:"queries"`
	Blocked        int `json:"blocked"`
	BypassAttempts int `json:"bypass_attempts"`
}

// LogEntry is one DNS query in `log`.
type LogEntry struct {
	Time    time.Time `json:"time"`
	MAC     string    `json:"mac"`
	Device  string    `json:"device"`
	Profile string    `json:"profile"`
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Verdict string    `json:"verdict"`
	By      string    `json:"by,omitempty"`
}

// UsageDay is one local day of `usage`.
type UsageDay struct {
	Date string `json:"date"`
	// Requests are the day's requests for more time and their answers:
	// who got how much extra time, when.
	Requests []TimeRequest `json:"requests"`
	// Profiles maps a profile to its online minutes (its screen time),
	// Services a profile to its minutes on each of its limited services
	// (service_limit), counted as screen time is.
	Profiles map[string]int            `json:"profiles"`
	Services map[string]map[string]int `json:"services,omitempty"`
	// Devices maps a MAC to its activity.
	Devices map[string]DeviceUsage `json:"devices"`
	// NewDevices are the day's first sightings of unlisted MACs (at most
	// MaxNewDevices; NewDevicesMore counts the rest).
	NewDevices     []SeenDevice `json:"new_devices,omitempty"`
	NewDevicesMore int          `json:"new_devices_more,omitempty"`
}

// MaxNewDevices bounds the new devices a day keeps: a child's random MACs
// are counted, not listed, past it.
const MaxNewDevices = 16

// DeviceUsage is one device's activity on one day.
type DeviceUsage struct {
	Name           string `json:"name"`
	Profile        string `json:"profile"`
	Minutes        int    `json:"minutes"`
	BytesUp        uint64 `json:"bytes_up"`
	Blocked        int    `json:"blocked"`
	BypassAttempts int    `json:"bypass_attempts"`
	// FlowsDropped counts the new connections the kernel dropped because
	// the device opened them faster than flow_limit.
	FlowsDropped uint64 `json:"flows_dropped"`
	// TopBlocked counts the names the filter refused most often (at most
	// MaxTopBlocked); Services the minutes in which the device looked up
	// each service of the catalogue (what DNS shows of where the time
	// went, not screen time). Both are kept for the last week only.
	TopBlocked map[string]int `json:"top_blocked,omitempty"`
	Services   map[string]int `json:"services,omitempty"`
}

// MaxTopBlocked bounds the blocked names kept per device and day.
const MaxTopBlocked = 10

// SeenDevice is a device the config does not list, the first time the
// daemon saw it on the LAN.
type SeenDevice struct {
	MAC string `json:"mac"`
	// Hostname is the name it asked DHCP for, if any: the device's own
	// words, text only.
	Hostname string    `json:"hostname,omitempty"`
	Time     time.Time `json:"time"`
}

// TimeRequest is a child's request for more time, asked on the bedtime
// page; `requests` lists them, approve and deny answer them. Message is
// the child's words: text, shown as text everywhere.
type TimeRequest struct {
	ID      string    `json:"id"`
	MAC     string    `json:"mac"`
	Device  string    `json:"device"`
	Profile string    `json:"profile"`
	Minutes int       `json:"minutes"`
	Message string    `json:"message"`
	AskedAt time.Time `json:"asked_at"`
	// Cause is why the device was offline (schedule, pause, limit), or
	// "service" for more time on Service (ServiceTitle for people), and
	// Reason the same for people.
	Cause        string `json:"cause"`
	Reason       string `json:"reason"`
	Service      string `json:"service,omitempty"`
	ServiceTitle string `json:"service_title,omitempty"`
	// Expires is the end of the offline time asked about: an open
	// request ends then.
	Expires time.Time `json:"expires"`
	// Status is open, approved, denied or expired.
	Status     string     `json:"status"`
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	// Granted and Scope say what an approval gave: minutes, to the
	// device or to its whole profile, as an allow or a grant
	// (Override).
	Granted  int    `json:"granted,omitempty"`
	Scope    string `json:"scope,omitempty"`
	Override string `json:"override,omitempty"`
}

// The states of a TimeRequest.
const (
	RequestOpen     = "open"
	RequestApproved = "approved"
	RequestDenied   = "denied"
	RequestExpired  = "expired"
)
