// Package services is the built-in catalogue behind `block_service`: each
// service a parent can name, with the domains it is served from.
//
// The lists name the apex domains and the content/CDN domains a service
// cannot work without; a blocked domain also blocks its subdomains, so the
// lists stay short. They ship inside the binary so that blocking "roblox"
// needs no download on the router.
//
// Source: the lists were checked against v2fly/domain-list-community (MIT
// licence; data/<service>, commit c975ccef of 2026-08-19) and extended by
// the content, API and CDN domains without which a service's app or
// video would otherwise escape a block or the weekly report (TikTok's EU
// and US CDNs and live streams, Twitch's video segments on
// live-video.net, Snapchat's static and gateway hosts, …). Left out on
// purpose: brand and typo domains nobody's app uses, and hosts that other
// services share (Epic's anti-cheat, Google's ggpht.com images), which a
// block would take from those too. AdGuard's HostlistsRegistry (GPL-3.0)
// was not used.
package services

import (
	"sort"
	"strings"
)

// Service is one entry of the catalogue.
type Service struct {
	Name    string   `json:"name"`
	Title   string   `json:"title"`
	Domains []string `json:"domains"`
}

// catalogueText is the catalogue, a line per service: "name;Title;domain
// domain …". Text, not a composite literal: a literal's string headers
// (some 150) are initialised data, 2.4 kB of the router binary's file
// (mipsle), where this is one read-only string.
const catalogueText = `youtube;YouTube;youtube.com youtu.be ytimg.com googlevideo.com youtube-nocookie.com youtubei.googleapis.com yt.be
tiktok;TikTok;tiktok.com tiktokv.com tiktokcdn.com tiktokcdn-us.com byteoversea.com ibytedtos.com musical.ly tiktokw.us tiktokcdn-eu.com tiktokeu-cdn.com tiktokrow-cdn.com tiktokv.us tiktokv.eu tiktokw.eu tiktokd.net tiktokd.org tiktok-row.net ttwstatic.com ttlivecdn.com muscdn.com
instagram;Instagram;instagram.com cdninstagram.com ig.me instagr.am igcdn.com igtv.com
snapchat;Snapchat;snapchat.com snap.com snapads.com sc-cdn.net snapkit.com feelinsonice-hrd.appspot.com sc-static.net sc-gw.com snapkit.co
facebook;Facebook;facebook.com fb.com fbcdn.net facebook.net fb.me messenger.com fbcdn.com fbsbx.com
whatsapp;WhatsApp;whatsapp.com whatsapp.net wa.me
discord;Discord;discord.com discord.gg discordapp.com discordapp.net discord.media discordcdn.com discord.co discordapp.io dis.gd
roblox;Roblox;roblox.com rbxcdn.com rbx.com robloxlabs.com roblox.qq.com rbxinfra.net
fortnite;Fortnite;fortnite.com epicgames.com epicgames.dev unrealengine.com epicgamescdn.com
minecraft;Minecraft;minecraft.net mojang.com minecraftservices.com minecraft-services.net playfabapi.com
twitch;Twitch;twitch.tv ttvnw.net jtvnw.net twitchcdn.net twitchsvc.net ext-twitch.tv live-video.net
netflix;Netflix;netflix.com nflxvideo.net nflximg.net nflxext.com nflxso.net nflximg.com nflxsearch.net netflix.net
reddit;Reddit;reddit.com redd.it redditmedia.com redditstatic.com
steam;Steam;steampowered.com steamcommunity.com steamstatic.com steamcontent.com steamserver.net steamgames.com steamusercontent.com steam-chat.com
telegram;Telegram;telegram.org telegram.me t.me telegra.ph telesco.pe cdn-telegram.org telegram-cdn.org
x;X (Twitter);x.com twitter.com twimg.com t.co pscp.tv
twitter;Twitter (X);x.com twitter.com twimg.com t.co pscp.tv
pinterest;Pinterest;pinterest.com pinimg.com pin.it
spotify;Spotify;spotify.com scdn.co spotifycdn.com spoti.fi audio-ak-spotify-com.akamaized.net spotifycdn.net pscdn.co`

var catalogue = func() []Service {
	lines := strings.Split(catalogueText, "\n")
	out := make([]Service, len(lines))
	for i, l := range lines {
		f := strings.SplitN(l, ";", 3)
		out[i] = Service{Name: f[0], Title: f[1], Domains: strings.Fields(f[2])}
	}
	return out
}()

// Catalogue is the built-in set of services.
type Catalogue struct{ byName map[string]*Service }

// Builtin returns the catalogue shipped in the binary.
func Builtin() Catalogue {
	c := Catalogue{byName: make(map[string]*Service, len(catalogue))}
	for i := range catalogue {
		c.byName[catalogue[i].Name] = &catalogue[i]
	}
	return c
}

// Has reports whether name is in the catalogue.
func (c Catalogue) Has(name string) bool { _, ok := c.byName[name]; return ok }

// Get returns a service by name, or nil.
func (c Catalogue) Get(name string) *Service { return c.byName[name] }

// All returns the services sorted by name.
func (c Catalogue) All() []*Service {
	out := make([]*Service, 0, len(c.byName))
	for _, s := range c.byName {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// byDomain maps each catalogue domain to its service, the first listed
// where two share one (x before twitter).
var byDomain = func() map[string]string {
	m := map[string]string{}
	for _, s := range catalogue {
		for _, d := range s.Domains {
			if _, ok := m[d]; !ok {
				m[d] = s.Name
			}
		}
	}
	return m
}()

// Of returns the service a host name belongs to (the name is one of a
// service's domains or under one), or "". The weekly report counts a
// device's minutes with lookups of each service by it: what the DNS
// shows of where the time went.
func Of(name string) string {
	for {
		if s, ok := byDomain[name]; ok {
			return s
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return ""
		}
		name = name[i+1:]
	}
}
