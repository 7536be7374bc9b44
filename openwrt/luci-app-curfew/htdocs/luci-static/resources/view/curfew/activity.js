'use strict';
'require view';
'require rpc';
'require ui';
'require curfew.dom as dom';

// Usage history and the DNS log, as the daemon records them. Query names
// are whatever a child's device asked for: they reach the page as text
// only (curfew.dom).

var callUsage = rpc.declare({ object: 'curfew', method: 'usage', params: [ 'target', 'days' ], expect: { result: [] } });
var callLog = rpc.declare({ object: 'curfew', method: 'log', params: [ 'target', 'limit' ], expect: { result: [] } });

var callReport = rpc.declare({ object: 'curfew', method: 'report', params: [ 'days' ], expect: { '': {} } });

var svgNS = 'http://www.w3.org/2000/svg';

function svgEl(tag, attrs, text) {
	var n = document.createElementNS(svgNS, tag);
	Object.keys(attrs || {}).forEach(function(k) { n.setAttribute(k, attrs[k]); });
	if (text != null)
		n.textContent = String(text);
	return n;
}

// weekday names a report's date (YYYY-MM-DD, a local date of the
// router) in the browser's language, without a time zone to shift it.
function weekday(date) {
	var p = date.split('-');
	return new Date(Date.UTC(+p[0], +p[1] - 1, +p[2])).toLocaleDateString(undefined, { weekday: 'short', timeZone: 'UTC' });
}

// weekChart draws a child's screen time per day as bars in inline SVG
// (no external script), with the daily limit as a dashed line and the
// days over it in another colour. It scales to the width it is given,
// a phone's too.
function weekChart(p) {
	var w = 420, h = 150, pad = 22, top = 14, days = p.days || [];
	var bw = (w - 2 * pad) / Math.max(days.length, 1);
	var max = Math.max(60, p.limit_minutes * 1.25 || 0);
	days.forEach(function(d) { max = Math.max(max, d.minutes); });
	var y = function(m) { return h - pad - (h - pad - top) * m / max; };
	var svg = svgEl('svg', { 'viewBox': '0 0 ' + w + ' ' + h, 'width': '100%', 'role': 'img',
		'style': 'max-width:' + w + 'px;display:block', 'class': 'curfew-week' });
	svg.appendChild(svgEl('title', {}, _('Screen time per day for %s').format(p.name)));
	days.forEach(function(d, i) {
		var over = p.limit_minutes > 0 && d.minutes > p.limit_minutes;
		var bar = svgEl('rect', { 'x': pad + i * bw + 4, 'y': y(d.minutes), 'width': Math.max(bw - 8, 1),
			'height': h - pad - y(d.minutes), 'fill': over ? '#d9534f' : '#5b9bd5' });
		bar.appendChild(svgEl('title', {}, _('%s: %s online').format(d.date, dom.duration(d.minutes))));
		svg.appendChild(bar);
		svg.appendChild(svgEl('text', { 'x': pad + i * bw + bw / 2, 'y': h - 6, 'text-anchor': 'middle', 'font-size': '11' }, weekday(d.date)));
		if (d.minutes > 0)
			svg.appendChild(svgEl('text', { 'x': pad + i * bw + bw / 2, 'y': y(d.minutes) - 3, 'text-anchor': 'middle', 'font-size': '10' }, dom.duration(d.minutes)));
	});
	if (p.limit_minutes > 0) {
		svg.appendChild(svgEl('line', { 'x1': pad, 'x2': w - pad, 'y1': y(p.limit_minutes), 'y2': y(p.limit_minutes),
			'stroke': '#333', 'stroke-dasharray': '4 3' }));
		svg.appendChild(svgEl('text', { 'x': w - pad, 'y': y(p.limit_minutes) - 3, 'text-anchor': 'end', 'font-size': '10' },
			_('limit %s').format(dom.duration(p.limit_minutes))));
	}
	return svg;
}

function counts(list, fmt) {
	return (list || []).map(function(c) { return (c.title || c.name) + ' ' + fmt(c.count); }).join(', ');
}

// weekCard is one child's week: the chart, then what the report says in
// words. Device names and blocked names are text.
function weekCard(p) {
	var rq = p.requests || {};
	var lines = [
		[ _('Devices'), (p.devices || []).join(', ') || '-' ],
		[ _('Online this week'), dom.duration(p.minutes) + (p.limit_minutes > 0 ? ' (' + _('limit %s a day').format(dom.duration(p.limit_minutes)) + ')' : '') ],
		[ _('Looked up most'), counts(p.services, dom.duration) || '-' ],
		[ _('Time on limited services'), counts(p.limited, dom.duration) || '-' ],
		[ _('Blocked'), p.blocked ? p.blocked + (p.top_blocked && p.top_blocked.length ? ' (' + counts(p.top_blocked, String) + ')' : '') : '0' ],
		[ _('Asked for more time'), rq.asked ? _('%d: %d approved, %d denied, %d unanswered').format(rq.asked, rq.approved, rq.denied, rq.unanswered) : '0' ],
		[ _('Bypass attempts'), String(p.bypass_attempts || 0) ]
	];
	return E('div', { 'class': 'cbi-section curfew-week-card' }, [
		dom.el('h4', {}, p.name),
		p.minutes > 0 ? weekChart(p) : E('p', _('No screen time this week.')),
		dom.el('dl', { 'class': 'curfew-week-facts' }, lines.reduce(function(acc, l) {
			return acc.concat([ dom.el('dt', {}, l[0]), dom.el('dd', {}, l[1]) ]);
		}, []))
	]);
}

// week is the report's view: a card per child, then the new devices; or
// why there is none (rpcd answers an error, such as the daemon not
// running, as an object).
function week(r) {
	if (r.error)
		return dom.el('p', {}, r.error);
	var cards = (r.profiles || []).map(weekCard);
	var seen = (r.new_devices || []).map(function(d) {
		return [ new Date(d.time).toLocaleString(), d.mac, d.hostname || '' ];
	});
	var out = [
		dom.el('p', {}, _('%s to %s').format(r.from || '', r.to || '')),
		cards.length ? dom.el('div', {}, cards) : E('p', _('No profile has rules.')),
		E('h4', _('New devices')),
		dom.table([ _('First seen'), _('MAC'), _('DHCP name') ], seen, _('No new devices this week.'))
	];
	if (r.new_devices_more)
		out.push(dom.el('p', {}, _('and %d more').format(r.new_devices_more)));
	return dom.el('div', {}, out);
}

function totals(days) {
	var rows = [];
	days.forEach(function(d) {
		Object.keys(d.devices).sort().forEach(function(mac) {
			var u = d.devices[mac];
			rows.push([ d.date, u.name || mac, dom.duration(u.minutes), u.blocked, u.bypass_attempts, u.flows_dropped || 0 ]);
		});
	});
	return dom.table([ _('Day'), _('Device'), _('Online'), _('Blocked'), _('Bypass attempts'), _('Connections dropped') ], rows, _('No usage recorded yet.'));
}

function logTable(entries, filter) {
	var rows = [];
	entries.slice().reverse().forEach(function(e) {
		var text = [ e.device, e.mac, e.name, e.verdict, e.by ].join(' ');
		if (filter && text.toLowerCase().indexOf(filter.toLowerCase()) < 0)
			return;
		rows.push([
			new Date(e.time).toLocaleTimeString(),
			e.device || e.mac,
			e.name + ' ' + e.type,
			e.by ? e.verdict + ' (' + e.by + ')' : e.verdict
		]);
	});
	return dom.table([ _('Time'), _('Device'), _('Name'), _('Verdict') ], rows, _('No DNS queries recorded.'));
}

return view.extend({
	load: function() {
		return Promise.all([ callUsage('', 7), callLog('', 500), callReport(7) ]);
	},

	render: function(data) {
		var days = data[0] || [], entries = data[1] || [], report = data[2] || {};
		var logBox = E('div', {}, [ logTable(entries, '') ]);
		var filter = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'placeholder': _('Filter: device, name, verdict'),
			'keyup': function(ev) { logBox.replaceChildren(logTable(entries, ev.target.value)); } });
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', _('Activity')),
			E('div', { 'class': 'cbi-map-descr' }, _('The week at a glance per child (as the weekly report has it), each device\'s days, and recent DNS queries.')),
			E('h3', _('This week')),
			week(report),
			E('h3', _('Per device')),
			totals(days),
			E('h3', _('Recent DNS queries')),
			filter,
			logBox
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
