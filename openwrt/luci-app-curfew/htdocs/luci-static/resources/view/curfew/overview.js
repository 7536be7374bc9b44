'use strict';
'require view';
'require rpc';
'require ui';
'require poll';
'require curfew.dom as dom';

// Everything shown here comes from the daemon (ubus object "curfew"):
// states, reasons, "until" and remaining screen time are computed there,
// never in the browser. Values reach the page as text only (curfew.dom):
// host names and notes are chosen by the devices.

var callStatus = rpc.declare({ object: 'curfew', method: 'status', expect: { '': {} } });
var callDevices = rpc.declare({ object: 'curfew', method: 'devices', expect: { result: [] } });
var callPause = rpc.declare({ object: 'curfew', method: 'pause', params: [ 'target', 'for', 'until' ] });
var callResume = rpc.declare({ object: 'curfew', method: 'resume', params: [ 'target' ] });
var callAllow = rpc.declare({ object: 'curfew', method: 'allow', params: [ 'target', 'for', 'until' ] });
var callGrant = rpc.declare({ object: 'curfew', method: 'grant', params: [ 'target', 'amount', 'service' ] });
var callAssign = rpc.declare({ object: 'curfew', method: 'assign', params: [ 'mac', 'profile', 'name' ] });
var callRequests = rpc.declare({ object: 'curfew', method: 'requests', expect: { result: [] } });
var callApprove = rpc.declare({ object: 'curfew', method: 'approve', params: [ 'id', 'minutes', 'whole_profile' ] });
var callDeny = rpc.declare({ object: 'curfew', method: 'deny', params: [ 'id' ] });

function when(iso) {
	if (!iso)
		return '-';
	var d = new Date(iso), now = new Date();
	var hm = ('0' + d.getHours()).slice(-2) + ':' + ('0' + d.getMinutes()).slice(-2);
	if (d.toDateString() == now.toDateString())
		return hm;
	return d.toLocaleDateString(undefined, { weekday: 'short' }) + ' ' + hm;
}

function act(promise) {
	return promise.then(function(res) {
		if (res && res.error)
			ui.addNotification(null, dom.el('p', {}, res.error), 'error');
		else if (res && res.message)
			ui.addNotification(null, dom.el('p', {}, res.message), 'info');
		return refresh();
	});
}

var container;

function banner(st) {
	var out = [];
	if (st.error)
		out.push(E('div', { 'class': 'alert-message error' }, [ _('The curfew daemon does not answer: %s').format(st.error) ]));
	if (st.enforcement && st.enforcement.error)
		out.push(E('div', { 'class': 'alert-message error' }, [
			E('p', _('Nothing is enforced: the kernel refused curfew\'s rules. curfew tries again by itself; the kernel said:')),
			dom.el('pre', {}, st.enforcement.error)
		]));
	if (st.clock_trusted === false)
		out.push(E('div', { 'class': 'alert-message warning' },
			[ _('The router clock is not synchronised yet: managed devices follow the "clock not synchronised" setting.') ]));
	if (st.config && st.config.ok === false)
		out.push(E('div', { 'class': 'alert-message error' }, [
			E('p', _('The last configuration change was refused; the previous rules stay in force:')),
			dom.el('pre', {}, (st.config.errors || []).join('\n'))
		]));
	if (st.state_error)
		out.push(dom.el('div', { 'class': 'alert-message error' }, st.state_error));
	(st.notes || []).forEach(function(n) {
		out.push(dom.el('div', { 'class': 'alert-message notice' }, n));
	});
	return out;
}

// actions are the parent's buttons for one device. They name it by its
// MAC: a name may repeat its profile's id ("alice"), and a button for one
// device must not act on the whole profile.
function actions(dev) {
	var target = dev.mac, name = dev.name || dev.mac;
	var buttons = [];
	// the daemon says why in causes; the words of dev.reason are for people
	if ((dev.causes || []).indexOf('pause') >= 0)
		buttons.push(E('button', { 'class': 'btn cbi-button-positive', 'click': function() { return act(callResume(target)); } }, [ _('Resume') ]));
	else
		buttons.push(E('button', { 'class': 'btn cbi-button-negative', 'click': function() { return act(callPause(target, '', '')); } }, [ _('Pause') ]));
	if (dev.budget_left !== undefined) {
		buttons.push(E('button', { 'class': 'btn', 'click': function() { return act(callGrant(target, '15m', '')); } }, [ _('+15 min') ]));
		buttons.push(E('button', { 'class': 'btn', 'click': function() { return act(callGrant(target, '30m', '')); } }, [ _('+30 min') ]));
	}
	// a service's own allowance (service_limit): more time on it alone
	(dev.services || []).forEach(function(s) {
		buttons.push(dom.el('button', { 'class': 'btn', 'click': function() { return act(callGrant(target, '15m', s.service)); } },
			_('+15 min %s').format(s.title)));
	});
	buttons.push(E('button', { 'class': 'btn', 'click': function() { allowUntil(target, name); } }, [ _('Allow until…') ]));
	return dom.el('div', { 'class': 'cbi-section-actions' }, buttons);
}

// allowUntil asks for the end of an allow in LuCI's own dialog. LuCI
// makes a bare string title into HTML, and name is the device's name:
// the title goes in as an array, which LuCI turns into text nodes.
function allowUntil(target, name) {
	var input = E('input', { 'type': 'time', 'class': 'cbi-input-text', 'required': true });
	ui.showModal([ _('Allow %s until').format(name) ], [
		E('p', {}, [ input ]),
		E('div', { 'class': 'right' }, [
			E('button', { 'class': 'btn', 'click': ui.hideModal }, [ _('Cancel') ]), ' ',
			E('button', { 'class': 'btn cbi-button-positive', 'click': function() {
				if (!input.value)
					return;
				ui.hideModal();
				return act(callAllow(target, '', input.value));
			} }, [ _('Allow') ])
		])
	]);
}

// timeLeft is the screen time left today and, below it, each limited
// service's ("YouTube: 5m left", "YouTube: used up").
function timeLeft(dev) {
	var out = [ dev.budget_left || '-' ];
	(dev.services || []).forEach(function(s) {
		out.push(E('br'), dom.el('small', {}, s.left == '0m'
			? _('%s: used up').format(s.title) : _('%s: %s left').format(s.title, s.left)));
	});
	return out;
}

function deviceTable(plan) {
	var rows = [];
	((plan && plan.devices) || []).forEach(function(dev) {
		if (!dev.managed || dev.unknown)
			return;
		// online, but slowed before its offline window (wind_down)
		var slow = dev.state == 'online' && (dev.causes || []).indexOf('wind_down') >= 0;
		rows.push([
			[ dev.name || dev.mac, E('br'), dom.el('small', {}, dev.mac) ],
			// the profile whose Wi-Fi key the device joined with (never the key)
			dev.wifi_key ? [ dev.profile, E('br'), dom.el('small', {}, _('joined with the Wi-Fi key of %s').format(dev.wifi_key)) ] : dev.profile,
			dom.el('span', { 'class': 'label ' + (slow ? 'notice' : dev.state == 'online' ? 'success' : 'warning') },
				slow ? _('winding down') : dev.state == 'online' ? _('online') : _('offline')),
			dev.reason,
			when(dev.until),
			timeLeft(dev),
			actions(dev)
		]);
	});
	return dom.table([ _('Device'), _('Profile'), _('State'), _('Why'), _('Until'), _('Screen time left'), _('Actions') ],
		rows, _('No devices are configured yet.'));
}

function unknownTable(devices, profiles) {
	var rows = (devices || []).filter(function(d) { return !d.configured; }).map(function(d) {
		var select = dom.el('select', { 'class': 'cbi-input-select' }, profiles.map(function(p) { return dom.el('option', { 'value': p }, p); }));
		return [
			[ d.mac, d.note ? dom.el('div', {}, dom.el('small', {}, d.note)) : '' ],
			d.hostname || '-',
			d.profile || _('unrestricted'),
			[ select, ' ', E('button', { 'class': 'btn cbi-button-action', 'click': function() {
				return act(callAssign(d.mac, select.value, d.hostname || ''));
			} }, [ _('Assign') ]) ]
		];
	});
	return dom.table([ _('MAC'), _('DHCP name'), _('Treated as'), _('Assign to profile') ], rows, _('No unknown devices.'));
}

// requestList shows the children's open requests for more time (asked on
// the bedtime page), each with Approve and Deny; the message is the
// child's words and reaches the page as text.
function requestList(requests) {
	var open = (requests || []).filter(function(r) { return r.status == 'open'; });
	if (!open.length)
		return [];
	var rows = open.map(function(r) {
		return [
			when(r.asked_at),
			[ r.device, E('br'), dom.el('small', {}, r.reason || r.cause) ],
			r.service_title ? _('%s of %s').format(dom.duration(r.minutes), r.service_title) : dom.duration(r.minutes),
			r.message ? dom.el('q', {}, r.message) : '-',
			dom.el('div', { 'class': 'cbi-section-actions' }, [
				E('button', { 'class': 'btn cbi-button-positive', 'click': function() { return act(callApprove(r.id, 0, false)); } }, [ _('Approve') ]), ' ',
				E('button', { 'class': 'btn cbi-button-negative', 'click': function() { return act(callDeny(r.id)); } }, [ _('Deny') ])
			])
		];
	});
	return [
		E('h3', _('Requests for more time')),
		dom.table([ _('Asked'), _('Device'), _('Wants'), _('Message'), _('Answer') ], rows, '')
	];
}

function draw(st, devices, requests) {
	var profiles = {};
	((st.plan && st.plan.devices) || []).forEach(function(d) { if (d.profile) profiles[d.profile] = true; });
	return dom.el('div', {}, banner(st).concat(requestList(requests), [
		E('h3', _('Children and devices')),
		deviceTable(st.plan),
		E('h3', _('Unknown devices')),
		unknownTable(devices, Object.keys(profiles).sort())
	]));
}

// asked counts refreshes and drawn is the newest one on the page: the 10 s
// poll and an action's refresh can overlap, and an older answer arriving
// last would show the state from before the parent's click.
var asked = 0, drawn = 0;

function refresh() {
	var n = ++asked;
	return Promise.all([ callStatus(), callDevices(), callRequests() ]).then(function(r) {
		if (!container || n < drawn)
			return;
		drawn = n;
		container.replaceChildren(draw(r[0] || {}, r[1] || [], r[2] || []));
	});
}

return view.extend({
	load: function() {
		return Promise.all([ callStatus(), callDevices(), callRequests() ]);
	},

	render: function(data) {
		container = E('div', {}, [ draw(data[0] || {}, data[1] || [], data[2] || []) ]);
		poll.add(refresh, 10);
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', _('Parental controls')),
			E('div', { 'class': 'cbi-map-descr' }, _('Who is online now, why, and until when. Changes take effect at once.')),
			container
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
