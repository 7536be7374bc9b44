// Package wifi makes the Wi-Fi key a device joined with say whose device it
// is: a child's phone with a new random MAC, or with a parent's MAC copied,
// still joins with the child's key, and belongs to the child's profile.
//
// How: curfew writes every profile's keys into one hostapd key file
// (wpa_psk_file), each line tagged with the profile as its key id, and
// listens on hostapd's control sockets for AP-STA-CONNECTED events, which
// carry the key id of the key the station's handshake matched.
//
// Why this way and not OpenWrt's hostapd-auth ubus object: the control
// socket, key ids and RELOAD_WPA_PSK are upstream hostapd, the same on
// OpenWrt 23.05, 24.10 and 25.12 (hostapd-auth came with 24.10); the
// event comes from the handshake itself, so there is no list of
// passphrases to send at each authentication, nor hostapd's main loop
// held for up to a second waiting for curfew's answer; and the key file
// stays in force when curfew is not running (a device still joins, and
// curfew learns who it is when it starts, from STA-FIRST/STA-NEXT). Both
// routes identify only with WPA2-PSK: with SAE (WPA3) a network has one
// password per station address (CheckWireless warns).
package wifi
