package schedule

import "os"

// testingCI is true under CI, where missing zoneinfo must fail, not skip.
var testingCI = os.Getenv("CI") == "true"
