'use strict';
'require view';
'require form';
'require rpc';

// Edits /etc/config/curfew. The checks mirror `curfew check`, so that a
// form that saves is a config the daemon accepts; Save & Apply commits it
// and procd's reload trigger makes the daemon reload.

var callServices = rpc.declare({ object: 'curfew', method: 'services', expect: { result: [] } });

function validTime(section_id, value) {
	if (!value)
		return true;
	var m = /^(\d{1,2}):(\d{2})$/.exec(value);
	if (!m || +m[2] > 59 || +m[1] > 24 || (+m[1] == 24 && +m[2] != 0))
		return _('Expecting a time HH:MM, 00:00 to 24:00');
	return true;
}

function validDuration(section_id, value) {
	if (!value)
		return true;
	if (!/^(\d+h)?(\d+m)?$/.test(value) && !/^\d+$/.test(value))
		return _('Expecting a duration such as 90m or 1h30m');
	return true;
}

// validServiceLimit checks "SERVICE DURATION [DAYS]" against the catalogue
// the daemon serves; the daemon checks it again (and the days) on load.
function validServiceLimit(services, value) {
	if (!value)
		return true;
	var f = value.trim().split(/\s+/);
	var known = (services || []).some(function(s) { return s.name == (f[0] || '').toLowerCase(); });
	if (f.length < 2 || !known || validDuration(null, f[1]) !== true)
		return _('Expecting a service and a duration, such as "youtube 1h" or "roblox 30m weekdays"');
	return true;
}

function validRate(section_id, value) {
	if (!value)
		return true;
	if (!/^\d+(\.\d+)?(kbit|mbit)$/i.test(value))
		return _('Expecting a rate such as 1mbit or 512kbit');
	return true;
}

function validDestination(section_id, value) {
	if (!value)
		return true;
	if (/^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(value) && /[.:]/.test(value))
		return true;
	if (/^([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.)+[a-zA-Z0-9_-]{1,63}\.?$/.test(value))
		return true;
	return _('Expecting a domain, an address or a prefix');
}

return view.extend({
	load: function() {
		return callServices().catch(function() { return []; });
	},

	render: function(services) {
		var m, s, o;

		m = new form.Map('curfew', _('Parental controls: profiles'),
			_('Profiles hold the rules; devices belong to a profile; schedules take a profile offline (or block some sites) at set times.'));

		s = m.section(form.NamedSection, 'main', 'curfew', _('General'));
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.rmempty = false;
		o = s.option(form.DynamicList, 'lan', _('LAN interfaces'), _('Interfaces whose clients are managed.'));
		o.datatype = 'network';
		o = s.option(form.Value, 'unknown_profile', _('Profile for unknown devices'),
			_('Devices not listed below (and new random MACs) get this profile. Empty: unrestricted.'));
		o = s.option(form.ListValue, 'clock_unsynced', _('Before the clock is synchronised'));
		o.value('offline', _('Managed devices offline'));
		o.value('online', _('Managed devices online'));
		o = s.option(form.Flag, 'page', _('Bedtime page'),
			_('An offline device that opens a plain-HTTP page (as phones do to check the connection) sees why, until when, and can ask for more time.'));
		o.default = '1';
		o = s.option(form.Value, 'requests_per_day', _('Requests per device and day'), _('0: the page has no form.'));
		o.datatype = 'range(0,50)';
		o.placeholder = '5';
		o.depends('page', '1');
		o = s.option(form.Value, 'flow_limit', _('New connections per device and second'),
			_('More are dropped (a burst of 20 seconds\' worth is allowed), so that one device cannot fill the router\'s connection table. 0: no limit.'));
		o.datatype = 'range(0,100000)';
		o.placeholder = '50';
		o = s.option(form.DynamicList, 'notify', _('Notify'),
			_('Webhook URLs that get each event as JSON; add ?format=text for an ntfy topic.'));
		o.datatype = 'string';
		o.validate = function(section, value) {
			return (!value || /^https?:\/\/[^\/\s]+/.test(value)) ? true : _('Expecting an http:// or https:// URL');
		};
		o = s.option(form.MultiValue, 'notify_events', _('Events to notify'));
		o.value('request', _('A child asks for more time'));
		o.value('new_device', _('An unknown device joins'));
		o.value('bypass', _('A device tries to get around the filter'));
		o.value('budget_used', _('Screen time used up'));
		o.value('enforcement_failed', _('The kernel refused curfew\'s rules: nothing is enforced'));
		o.value('wind_down', _('A profile winds down before bedtime'));
		o.value('weekly_report', _('The weekly report'));
		o.placeholder = _('all but the wind-down');
		o = s.option(form.ListValue, 'report_day', _('Weekly report on'));
		[ [ 'sun', _('Sunday') ], [ 'mon', _('Monday') ], [ 'tue', _('Tuesday') ], [ 'wed', _('Wednesday') ],
		  [ 'thu', _('Thursday') ], [ 'fri', _('Friday') ], [ 'sat', _('Saturday') ] ].forEach(function(d) { o.value(d[0], d[1]); });
		o.default = 'sun';
		o = s.option(form.Value, 'report_time', _('Weekly report at'), _('Router time, HH:MM: the week of screen time, services, blocks and requests per child.'));
		o.datatype = 'string';
		o.placeholder = '18:00';
		o.validate = function(section, value) {
			return (!value || /^([01][0-9]|2[0-3]):[0-5][0-9]$/.test(value)) ? true : _('Expecting HH:MM');
		};

		s = m.section(form.GridSection, 'profile', _('Profiles'));
		s.addremove = true;
		s.anonymous = false;
		s.nodescriptions = true;
		// the grid's first column is the section name (the profile id)
		o = s.option(form.Value, 'name', _('Display name'));
		o = s.option(form.Value, 'daily_limit', _('Daily screen time'), _('For example 2h or 1h30m; empty: no limit.'));
		o.placeholder = _('no limit');
		o.validate = validDuration;
		o = s.option(form.Value, 'wind_down', _('Wind-down'),
			_('Minutes before each offline window in which the devices are slowed (10m: video drops in quality, messages still work); empty: none.'));
		o.placeholder = _('none');
		o.validate = validDuration;
		o.modalonly = true;
		o = s.option(form.Value, 'wind_down_rate', _('Wind-down speed'), _('For example 1mbit or 512kbit.'));
		o.placeholder = '1mbit';
		o.validate = validRate;
		o.modalonly = true;
		o = s.option(form.DynamicList, 'notify', _('Tell the child'),
			_('URLs that hear when the wind-down begins, such as the child\'s own ntfy topic (https://ntfy.sh/…?format=text).'));
		o.modalonly = true;
		o = s.option(form.DynamicList, 'block', _('Blocked sites'), _('Domains (with their subdomains), addresses or prefixes.'));
		o.validate = validDestination;
		o.modalonly = true;
		o = s.option(form.MultiValue, 'block_service', _('Blocked services'));
		(services || []).forEach(function(svc) { o.value(svc.name, svc.title); });
		o.modalonly = true;
		o = s.option(form.DynamicList, 'service_limit', _('Time per service'),
			_('A daily allowance for one service, for example "youtube 1h", or "roblox 30m weekdays" with days; it also counts toward the daily screen time.'));
		o.placeholder = 'youtube 1h';
		o.validate = function(section_id, value) { return validServiceLimit(services, value); };
		o.modalonly = true;
		// The keys are secrets: only this edit dialog shows them, never
		// the grid.
		o = s.option(form.DynamicList, 'wifi_key', _('Wi-Fi keys'),
			_('Passwords of the Wi-Fi network for this profile\'s devices only: a device that joins with one belongs to this profile, whatever its MAC. The network must use WPA2 (psk2) and take curfew\'s key file (see the README).'));
		o.validate = function(section_id, value) {
			if (!value)
				return true;
			if (/^[0-9a-fA-F]{64}$/.test(value))
				return true;
			if (value.length < 8 || value.length > 63)
				return _('A Wi-Fi key has 8 to 63 characters');
			return /^[\x20-\x7e]+$/.test(value) ? true : _('Letters, digits, spaces and ASCII signs only');
		};
		o.modalonly = true;
		o = s.option(form.DynamicList, 'blocklist', _('Block lists'), _('Files or https URLs (hosts, plain or adblock format).'));
		o.modalonly = true;
		o = s.option(form.Flag, 'safesearch', _('Safe search'), _('Google, Bing and DuckDuckGo safe search; YouTube restricted mode.'));
		o = s.option(form.Flag, 'allowlist', _('Allowlist only'), _('Only the allowed sites can be reached.'));
		o = s.option(form.DynamicList, 'allow', _('Allowed sites'));
		o.validate = validDestination;
		o.modalonly = true;

		s = m.section(form.GridSection, 'device', _('Devices'));
		s.addremove = true;
		s.anonymous = true;
		o = s.option(form.Value, 'name', _('Name'));
		o.rmempty = false;
		o = s.option(form.Value, 'mac', _('MAC address'));
		o.datatype = 'macaddr';
		o.rmempty = false;
		o = s.option(form.Value, 'profile', _('Profile'));
		o.rmempty = false;
		o = s.option(form.Flag, 'match_hostname', _('Follow its DHCP name'),
			_('A new MAC asking for this device\'s DHCP name counts as this device. Names can be faked.'));
		o.modalonly = true;

		s = m.section(form.GridSection, 'schedule', _('Schedules'));
		s.addremove = true;
		s.anonymous = false;
		// LuCI's description row has no cell for the name column of a
		// named grid and would shift every help text one column left: the
		// help goes into the edit dialog and the placeholders instead.
		s.nodescriptions = true;
		o = s.option(form.DynamicList, 'profile', _('Profiles'));
		o.rmempty = false;
		o = s.option(form.MultiValue, 'days', _('Days'));
		o.value('mon', _('Monday'));
		o.value('tue', _('Tuesday'));
		o.value('wed', _('Wednesday'));
		o.value('thu', _('Thursday'));
		o.value('fri', _('Friday'));
		o.value('sat', _('Saturday'));
		o.value('sun', _('Sunday'));
		o = s.option(form.Value, 'start', _('From'), _('HH:MM'));
		o.placeholder = 'HH:MM';
		o.validate = validTime;
		o.rmempty = false;
		o = s.option(form.Value, 'stop', _('Until'), _('HH:MM; earlier than the start means the next day.'));
		o.validate = function(section_id, value) {
			var ok = validTime(section_id, value);
			if (ok !== true)
				return ok;
			var start = this.section.formvalue(section_id, 'start');
			if (value && start && value == start)
				return _('Start and stop are the same: a window needs a length');
			return true;
		};
		o.rmempty = false;
		o = s.option(form.ListValue, 'action', _('What happens'));
		o.default = 'offline'; // curfew's default when the option is absent
		o.value('offline', _('No internet at all'));
		o.value('block', _('Block the sites below'));
		o = s.option(form.DynamicList, 'block', _('Blocked sites in this window'));
		o.validate = validDestination;
		o.depends('action', 'block');
		o.modalonly = true;
		o = s.option(form.Value, 'wind_down', _('Wind-down'), _('Before this window; 0: none; empty: the profile\'s.'));
		o.placeholder = _('the profile\'s');
		o.validate = validDuration;
		o.depends('action', 'offline');
		o.modalonly = true;

		return m.render();
	}
});
