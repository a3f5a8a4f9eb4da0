'use strict';
// The periodic task form has one schedule picker (values "kind:id") instead of four foreign
// keys, so Django's add-another popups cannot fill it directly. Each "+" link targets a
// hidden select of its kind; when the popup saves, Django adds the new schedule there and
// triggers "change", and this copies it into the picker, selected.
window.addEventListener('load', function() {
    const $ = window.django && window.django.jQuery;
    const picker = document.getElementById('id_schedule');
    if (!$ || !picker) {
        return;
    }
    document.querySelectorAll('select[data-schedule-kind]').forEach(function(hidden) {
        $(hidden).on('change', function() {
            const chosen = hidden.options[hidden.selectedIndex];
            if (!chosen) {
                return;
            }
            const group = picker.querySelector('optgroup[label="' + hidden.dataset.scheduleGroup + '"]') || picker;
            const option = new Option(chosen.text, hidden.dataset.scheduleKind + ':' + chosen.value, true, true);
            group.appendChild(option);
            picker.value = option.value;
        });
    });
});
